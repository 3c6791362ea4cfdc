"""The offline writer: deterministic questions from the description, for laptops with no account.

No LLM is asked: each question pairs a template with a meaningful word of the
description, and token counts are estimated as an LLM would have counted them.
"""

from __future__ import annotations

import json
import re

from services.question_gen.generation import (
    Answer,
    estimate_tokens,
    prompt_messages,
    prompt_text,
)

STOPWORDS = frozenset(
    (
        "a an and are as at be by for from has have in is it its of on or our that the this to"
        " we will with you your who what which while into over per can able must should"
    ).split()
)

OFFLINE_TEMPLATES = (
    "Tell us about a time you worked with {topic}. What was your role?",
    "How would you explain {topic} to a new member of the team?",
    "What is the hardest problem you have solved involving {topic}?",
    "How do you keep your knowledge of {topic} up to date?",
    "Describe a mistake you made with {topic} and what you learned from it.",
    "How would you measure success in work involving {topic}?",
    "Which tools or practices do you rely on for {topic}, and why?",
    "How do you decide between speed and quality when working on {topic}?",
    "Walk us through how you would start on {topic} in your first month here.",
    "What would you change about how teams usually approach {topic}?",
)


def offline_topics(description: str) -> list[str]:
    """Distinct meaningful words of the description, most frequent first, ties by order."""
    words = re.findall(r"[A-Za-z][A-Za-z+#.\-]{2,}", description)
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for index, word in enumerate(words):
        key = word.lower().strip(".-")
        if key in STOPWORDS or len(key) < 3:
            continue
        counts[key] = counts.get(key, 0) + 1
        first_seen.setdefault(key, index)
    ranked = sorted(counts, key=lambda key: (-counts[key], first_seen[key]))
    return ranked or ["this role"]


def offline_answer(description: str, count: int) -> Answer:
    """Deterministic, distinct questions drawn from the description; tokens estimated."""
    topics = offline_topics(description)
    questions = []
    for index in range(count):
        # Each round pairs every template with a topic it has not had yet.
        round_, template = divmod(index, len(OFFLINE_TEMPLATES))
        text = OFFLINE_TEMPLATES[template].format(topic=topics[(template + round_) % len(topics)])
        if round_ >= len(topics):  # every pairing used: number the follow-ups
            text = f"{text} (follow-up {round_ // len(topics)})"
        questions.append(text)
    prompt = prompt_text(prompt_messages(description, count))
    completion = json.dumps({"questions": [{"text": text} for text in questions]})
    return Answer(
        questions=questions,
        prompt_tokens=estimate_tokens(prompt),
        completion_tokens=estimate_tokens(completion),
        model="offline",
    )


class OfflineWriter:
    """Deterministic questions from the description, for laptops with no account."""

    model = "offline"

    async def write(self, description: str, count: int) -> Answer:
        return offline_answer(description, count)

    async def close(self) -> None:
        return None
