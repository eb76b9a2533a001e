"""Untrusted text (generated prompts and responses) kept as data: control tokens written inside it are neutralised.

A response that contains the text `<|im_end|>` must not close the judge's turn, nor `<|im_start|>assistant` open a
new one, once it is placed in a chat template and tokenized with special tokens parsed. `neutralize` breaks every
occurrence of such a token's text with a zero-width space after its first character: the reader (and the model)
still sees the same characters, the tokenizer no longer finds the control token. Text holding none is returned
unchanged, so ordinary prompts tokenize exactly as before. Pure: any tokenizer class passes its own special tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

ZERO_WIDTH_SPACE = "\u200b"

# Control tokens of the common chat templates (ChatML, Llama 3, Gemma, Phi, Mistral): neutralised in text sent to
# an engine whose own special tokens are unknown (a server applies its template), and in the judge's prompt.
COMMON_CONTROL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>", "<|user|>", "<|assistant|>",
    "<|system|>", "<|end|>", "[INST]", "[/INST]",
)


@lru_cache(maxsize=64)
def _pattern(tokens: tuple[str, ...]) -> re.Pattern | None:
    usable = sorted({t for t in tokens if len(t) >= 2}, key=len, reverse=True)  # one character cannot be broken
    return re.compile("|".join(re.escape(t) for t in usable)) if usable else None


def neutralize(text: str, special_tokens: Iterable[str]) -> str:
    """`text` with each occurrence of a special token's text broken by a zero-width space after its first character.

    Repeated until none is left (breaking one occurrence can leave an overlapping one whole); tokens of one
    character cannot be broken and are left alone. Idempotent; text without occurrences comes back unchanged."""
    pattern = _pattern(tuple(special_tokens))
    if pattern is None or not text:
        return text
    while True:
        broken = pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)
        if broken == text:
            return text
        text = broken


def holds_control_token(text: str, special_tokens: Iterable[str]) -> bool:
    """True when `text` contains the text of one of `special_tokens` (of two characters or more)."""
    pattern = _pattern(tuple(special_tokens))
    return bool(pattern and pattern.search(text))


def template_tags(template_text: str) -> tuple[str, ...]:
    """The <tag> and </tag> markers a prompt template wraps its fields in (e.g. <response>, </response>)."""
    return tuple(sorted(set(re.findall(r"</?[A-Za-z_][A-Za-z0-9_]*>", template_text))))


def control_tokens_of(engine) -> tuple[str, ...]:
    """The control tokens to neutralise in text sent to `engine`: its tokenizer's own, and the common ones."""
    return COMMON_CONTROL_TOKENS + tuple(getattr(getattr(engine, "tokenizer", None), "special_tokens", ()))
