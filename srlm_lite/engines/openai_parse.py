"""Reading an OpenAI-compatible completion answer (pure): its text, its next-token log-probs in either of the two
shapes servers use, and the echoed prompt's per-token log-probs."""

from __future__ import annotations

import math

from .base import LogprobsUnavailable

NO_LOGPROB = -math.inf  # a candidate outside the alternatives a server returned: probability below all of them


def choice_of(answer: dict) -> dict:
    choices = answer.get("choices") or []
    if not choices:
        raise ValueError(f"the server's answer holds no choices: {str(answer)[:300]}")
    return choices[0]


def completion_fields(answer: dict) -> tuple[str, int | None, str]:
    """(text, completion tokens as the server counted them or None, "stop" or "length")."""
    choice = choice_of(answer)
    usage = answer.get("usage") or {}
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    return choice.get("text") or "", usage.get("completion_tokens"), finish


def top_alternatives(answer: dict, position: int = 0) -> list[tuple[str | None, int | None, float]]:
    """(token text, token id, log-prob) of the alternatives at generated position `position`.

    Two shapes exist: the completions API's legacy `logprobs.top_logprobs` (a list of {text: logprob} per position:
    llama-cpp-python, vLLM, OpenAI) and the chat-style `logprobs.content` (a list of {id?, token, logprob,
    top_logprobs: [...]}: mlx_lm.server, llama-server)."""
    logprobs = choice_of(answer).get("logprobs")
    if not logprobs:
        raise LogprobsUnavailable("the server returned no log-probabilities")
    if logprobs.get("top_logprobs"):
        entry = logprobs["top_logprobs"][position]
        return [(text, None, float(lp)) for text, lp in (entry or {}).items()]
    content = logprobs.get("content")
    if content and len(content) > position:
        entry = content[position]
        found = [(alt.get("token"), alt.get("id"), float(alt["logprob"])) for alt in entry.get("top_logprobs") or []]
        if found:
            return found
    raise LogprobsUnavailable("the server's answer holds no top log-probabilities (top_logprobs)")


def candidate_logprobs(alternatives: list[tuple[str | None, int | None, float]],
                       candidates: dict[str, int | None]) -> dict[str, float]:
    """log p of each candidate string (with its token id, where known) among the returned alternatives.

    Matched by token id where the server gives ids, else by text; a candidate that is not among them gets
    NO_LOGPROB (its probability is below every returned alternative's)."""
    by_id = {token_id: lp for _, token_id, lp in alternatives if token_id is not None}
    by_text: dict[str, float] = {}
    for text, _, lp in alternatives:
        if text is not None:
            by_text[text] = max(lp, by_text.get(text, NO_LOGPROB))
    found = {}
    for candidate, token_id in candidates.items():
        if token_id is not None and token_id in by_id:
            found[candidate] = by_id[token_id]
        else:
            found[candidate] = by_text.get(candidate, NO_LOGPROB)
    return found


def echoed_logprobs(answer: dict, continuation: str, n_tokens: int) -> list[float]:
    """log p of each of the last `n_tokens` echoed prompt tokens, which must spell `continuation` (the completions
    API's `echo` with legacy `logprobs`: `tokens` and `token_logprobs` over the prompt, then the generated tokens,
    `usage.completion_tokens` of them).

    When the server's tokens there do not spell the continuation, it tokenized the prompt and the continuation
    together across their boundary, and the figures would not be the continuation's: ValueError."""
    logprobs = choice_of(answer).get("logprobs") or {}
    values, tokens = logprobs.get("token_logprobs"), logprobs.get("tokens")
    if not values:
        raise LogprobsUnavailable("the server echoed no per-token log-probabilities (token_logprobs)")
    end = len(values) - int((answer.get("usage") or {}).get("completion_tokens") or 0)
    start = end - n_tokens
    if start < 1:
        raise ValueError(f"the server echoed {end} prompt tokens, fewer than the continuation's {n_tokens} + 1")
    if tokens and "".join(tokens[start:end]) != continuation:
        raise ValueError(f"the server's last {n_tokens} prompt tokens spell {''.join(tokens[start:end])!r}, not the "
                         "continuation: it tokenized the prompt and the continuation together across their boundary")
    picked = values[start:end]
    if any(lp is None for lp in picked):
        raise LogprobsUnavailable("the server left some echoed log-probabilities empty")
    return [float(lp) for lp in picked]
