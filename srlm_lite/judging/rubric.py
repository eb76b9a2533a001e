"""The rubric judge (LLM-as-a-Judge, additive 5 points): the judge prompt and the three pointwise formats.

- expected: no text; the judge's answer is forced to begin with `Score: ` and the score is the expected value of
  its next-token distribution over the digits 0-5 (one forward pass, the rubric's KV cache reused);
- forced: J sampled justifications; each is scored from its own `Score: X`, or else from the digit distribution
  after a forced `Score: ` appended to it;
- sampled: the paper's free-text verdict only (no score when the judge wrote none).
The score is parsed from the judge's own text only, never from the judged response.
"""

from __future__ import annotations

import math

from ..engines.base import Engine, complete_n
from ..models.untrusted import control_tokens_of, neutralize, template_tags
from ..templates import load_template
from .scores import SCORE_MAX, SCORE_MIN, expected_score, parse_score, strip_verdicts

FORCED_PREFIX = "\nScore: "
SCORE_TOKENS = [str(d) for d in range(SCORE_MIN, SCORE_MAX + 1)]


def judge_prompt(engine: Engine, instruction: str, response: str) -> str:
    """The rubric comes first in the template, so its KV cache is shared by every judged response."""
    return engine.chat_prompt(render_untrusted(engine, "judge", instruction=instruction, response=response))


def render_untrusted(engine: Engine, template: str, **fields: str) -> str:
    """A judge template with generated text in its fields, as data: a verdict written in that text is removed
    (`scores.strip_verdicts`), the template's own tags (<response>...) and any control token in it neutralised, so
    the text can neither score itself nor close its block or the judge's turn (see `models.untrusted`). Ordinary
    text is placed unchanged."""
    source = load_template(template)
    guard = template_tags(source.text) + control_tokens_of(engine)
    return source.render(**{name: neutralize(strip_verdicts(text), guard) for name, text in fields.items()})


def digit_verdict(engine: Engine, prompt: str, min_mass: float) -> dict:
    """The expected score over the digits 0-5 as the next token after `prompt` (which ends with `Score: `)."""
    return digits_to_verdict(engine.next_token_logprobs(prompt, SCORE_TOKENS), min_mass)


def digits_to_verdict(logprobs: dict[str, float], min_mass: float) -> dict:
    """A verdict from the log-probabilities of the score digits (pure)."""
    digit_logprobs = {int(token): lp for token, lp in logprobs.items()}
    score = expected_score(digit_logprobs, min_mass)
    return {"score": None if score is None else round(score, 4),
            "source": "expected" if score is not None else "none",
            "digit_mass": round(sum(math.exp(lp) for lp in digit_logprobs.values()), 4)}


def expected_verdict(engine: Engine, prompt: str, min_mass: float) -> dict:
    """The "expected" judge on a judge prompt: no justification, one forward pass, deterministic."""
    return {"text": "", "seed": None, **digit_verdict(engine, prompt + FORCED_PREFIX.lstrip("\n"), min_mass)}


def expected_verdicts(engine: Engine, instruction: str, response: str, config, seeds: list[int]) -> list[dict]:
    """Format `expected` (J and the seeds are not used: the verdict is deterministic)."""
    return [expected_verdict(engine, judge_prompt(engine, instruction, response), config.min_digit_mass)]


def expected_verdicts_many(engine: Engine, items: list[tuple[str, str]], config) -> list[list[dict]]:
    """Format `expected` on several (instruction, response) at once: one batched forward pass of their judge
    prompts where the engine offers one (`next_token_logprobs_many`, the MLX engine), else one after another."""
    prompts = [judge_prompt(engine, i, r) + FORCED_PREFIX.lstrip("\n") for i, r in items]
    many = getattr(engine, "next_token_logprobs_many", None)
    rows = many(prompts, SCORE_TOKENS) if many else [engine.next_token_logprobs(p, SCORE_TOKENS) for p in prompts]
    return [[{"text": "", "seed": None, **digits_to_verdict(row, config.min_digit_mass)}] for row in rows]


def written_verdicts(engine: Engine, prompt: str, config, seeds: list[int], *, forced: bool) -> list[dict]:
    """One written verdict per seed, the texts sampled together (`complete_n`); with `forced`, a verdict that wrote
    no score is scored from the digit distribution after `Score: ` appended to its text."""
    outs = complete_n(engine, prompt, seeds=seeds, max_tokens=config.max_tokens, temperature=config.temperature,
                      top_p=config.top_p)
    found = []
    for seed, out in zip(seeds, outs):
        score = parse_score(out.text)
        verdict = {"text": out.text, "seed": seed, "score": score, "source": "parsed" if score is not None else "none"}
        if score is None and forced:
            verdict.update(digit_verdict(engine, prompt + out.text.rstrip() + FORCED_PREFIX, config.min_digit_mass))
        found.append(verdict)
    return found


def forced_verdicts(engine: Engine, instruction: str, response: str, config, seeds: list[int]) -> list[dict]:
    """Format `forced`: J sampled justifications, each scored (its own score, else the forced digit)."""
    return written_verdicts(engine, judge_prompt(engine, instruction, response), config, seeds, forced=True)


def sampled_verdicts(engine: Engine, instruction: str, response: str, config, seeds: list[int]) -> list[dict]:
    """Format `sampled`: the paper's J free-text verdicts, a score only where the judge wrote one."""
    return written_verdicts(engine, judge_prompt(engine, instruction, response), config, seeds, forced=False)
