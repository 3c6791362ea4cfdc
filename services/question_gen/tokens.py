"""Counting tokens as OpenAI's models do, for the calls whose usage the provider never sent.

An aborted stream gets no usage from OpenAI at all, and an OpenAI-compatible
server may leave it out: the prompt and the text received are then counted
with the model's encoding. The encodings ship inside the `bpe-openai` package
(`tiktoken` downloads its own at first use, which an air-gapped deployment
cannot do). Loading one takes about two seconds and 150 MB, so a process loads
it once, in a thread of its own started with the OpenAI writer (`Tokenizer.load`),
never on the request path and without holding start-up back; a count asked for
before it is in memory (the first seconds of a process) is the rough rule of
four characters a token, still marked estimated.
"""

from __future__ import annotations

import threading
from typing import Any

from services.question_gen.generation import estimate_tokens

# Model families and their encodings; a model we do not know is counted with the newest.
O200K = "o200k_base"
CL100K = "cl100k_base"
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35")
# OpenAI's documented overhead of the chat format: each message is framed by a few
# tokens, and the answer is primed with three more.
TOKENS_PER_MESSAGE = 3
TOKENS_PRIMING_ANSWER = 3


def encoding_name(model: str) -> str:
    """The encoding of `model`: cl100k for GPT-4 (not 4o or 4.1) and 3.5, else o200k."""
    name = model.strip().lower()
    if name == "gpt-4" or name.startswith(_CL100K_PREFIXES):
        return CL100K
    return O200K


_loaded: dict[str, Any] = {}
_loading = threading.Lock()


def _load(name: str) -> None:
    with _loading:
        if name not in _loaded:
            import bpe_openai  # heavy: its encodings load when it is imported

            _loaded[name] = bpe_openai.get_encoding(name)


class Tokenizer:
    """Counts prompts and texts in the encoding of one model."""

    def __init__(self, model: str) -> None:
        self.encoding = encoding_name(model)

    def load(self) -> None:
        """Load the encoding (once per process; blocking: run it in a thread)."""
        _load(self.encoding)

    @property
    def loaded(self) -> bool:
        return self.encoding in _loaded

    def text(self, text: str) -> int:
        if not text:
            return 0
        encoding = _loaded.get(self.encoding)
        if encoding is None:  # still loading: never wait for it on the event loop
            return estimate_tokens(text)
        return len(encoding.encode_ordinary(text))

    def prompt(self, messages: list[dict[str, str]]) -> int:
        """The prompt's tokens as the provider counts them: contents, roles, framing."""
        total = TOKENS_PRIMING_ANSWER
        for message in messages:
            total += TOKENS_PER_MESSAGE + self.text(message["role"]) + self.text(message["content"])
        return total
