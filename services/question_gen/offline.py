"""The offline writer: deterministic questions from the description, for laptops with no account.

No LLM is asked: each question pairs a template with a meaningful word of the
description, and token counts are estimated as an LLM would have counted them.
"""

from __future__ import annotations

import asyncio
import json
import re

from services.question_gen.generation import (
    Answer,
    CallEnd,
    CallLog,
    LlmCall,
    Tokens,
    estimate_tokens,
    prompt_messages,
    prompt_text,
)
from services.question_gen.llm import Deliver

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
        tokens=Tokens(prompt=estimate_tokens(prompt), completion=estimate_tokens(completion)),
        model="offline",
    )


# How long the offline writer takes over a question when it streams: about what a real
# LLM takes (ten questions in three seconds), so that `make dev` shows a stream arriving.
OFFLINE_SECONDS_PER_QUESTION = 0.3


class OfflineWriter:
    """Deterministic questions from the description, for laptops with no account.

    Asked for the whole answer it answers at once; streamed, it writes one question
    every `seconds_per_question`, as an LLM would.
    """

    model = "offline"

    def __init__(self, seconds_per_question: float = OFFLINE_SECONDS_PER_QUESTION) -> None:
        self.seconds_per_question = seconds_per_question

    async def write(self, description: str, count: int, calls: CallLog | None = None) -> Answer:
        answer = offline_answer(description, count)
        _log(calls, CallEnd.ANSWERED, answer.tokens)
        return answer

    async def stream(
        self, description: str, count: int, deliver: Deliver, calls: CallLog | None = None
    ) -> Answer:
        answer = offline_answer(description, count)
        written: list[str] = []
        end = CallEnd.CANCELLED
        try:
            for question in answer.questions:
                await asyncio.sleep(self.seconds_per_question)
                written.append(question)
                await deliver(question)
            end = CallEnd.ANSWERED
        finally:
            tokens = answer.tokens
            if end is not CallEnd.ANSWERED:  # what was written before it stopped
                text = json.dumps({"questions": [{"text": text} for text in written]})
                tokens = Tokens(prompt=tokens.prompt, completion=estimate_tokens(text))
            _log(calls, end, tokens)
        return answer

    async def close(self) -> None:
        return None


def _log(calls: CallLog | None, end: CallEnd, tokens: Tokens) -> None:
    if calls is not None:
        calls.append(LlmCall(model=OfflineWriter.model, end=end, tokens=tokens))
