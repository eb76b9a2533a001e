"""Verifiable instruction constraints (AutoIF's idea, IFEval's checkers): the instruction stage appends some to a
share of the generated prompts, and the `verify` reward is the share a response meets.

The constraints and their checks are IFEval's, from the maintained `if-verifiable` package (not rewritten): each
family here draws the arguments of one IFEval instruction with a seeded generator and lets the package write its
description. IFEval's families are grouped by the part of the id before the colon; the configuration chooses which
families training may use, so the rest stay for measuring generalisation on IFEval's own prompts."""

from __future__ import annotations

import random
from typing import Callable

KEYWORDS = ("example", "history", "simple", "future", "balance", "energy", "community", "method", "river", "light",
            "memory", "garden", "signal", "journey", "pattern", "summary")
FORBIDDEN = ("very", "really", "thing", "stuff", "basically", "actually", "just", "maybe", "good", "bad")
END_PHRASES = ("Is there anything else I can help with?", "Let me know if you have additional questions.",
               "That is all.")

# IFEval instruction id -> its arguments drawn from a seeded random generator
GENERATORS: dict[str, Callable[[random.Random], dict]] = {
    "length_constraints:number_words": lambda r: {"num_words": r.choice([40, 60, 100, 150]),
                                                  "relation": r.choice(["less than", "at least"])},
    "length_constraints:number_sentences": lambda r: {"num_sentences": r.randint(2, 6),
                                                      "relation": r.choice(["less than", "at least"])},
    "length_constraints:number_paragraphs": lambda r: {"num_paragraphs": r.randint(2, 4)},
    "keywords:existence": lambda r: {"keywords": r.sample(KEYWORDS, 2)},
    "keywords:forbidden_words": lambda r: {"forbidden_words": r.sample(FORBIDDEN, 2)},
    "keywords:frequency": lambda r: {"keyword": r.choice(KEYWORDS), "frequency": r.randint(2, 3),
                                     "relation": "at least"},
    "detectable_format:json_format": lambda r: {},
    "detectable_format:number_bullet_lists": lambda r: {"num_bullets": r.randint(2, 5)},
    "detectable_format:title": lambda r: {},
    "detectable_format:multiple_sections": lambda r: {"section_spliter": r.choice(["Section", "SECTION"]),
                                                      "num_sections": r.randint(2, 4)},
    "detectable_format:number_highlighted_sections": lambda r: {"num_highlights": r.randint(1, 3)},
    "detectable_content:postscript": lambda r: {"postscript_marker": r.choice(["P.S.", "P.P.S"])},
    "detectable_content:number_placeholders": lambda r: {"num_placeholders": r.randint(1, 3)},
    "change_case:english_lowercase": lambda r: {},
    "change_case:english_capital": lambda r: {},
    "punctuation:no_comma": lambda r: {},
    "startend:end_checker": lambda r: {"end_phrase": r.choice(END_PHRASES)},
    "startend:quotation": lambda r: {},
}
FAMILIES = tuple(sorted({name.split(":")[0] for name in GENERATORS}))
# about a third of IFEval's families kept out of `verify`'s training by default (measured on IFEval as "unseen")
HELD_OUT_FAMILIES = ("change_case", "punctuation", "startend")
TRAIN_FAMILIES = tuple(f for f in FAMILIES if f not in HELD_OUT_FAMILIES)


def family(instruction_id: str) -> str:
    return instruction_id.split(":")[0]


def parse_families(text: str) -> tuple[str, ...]:
    """A comma-separated list of families, each one we can generate; a clear error naming the known ones."""
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown or not chosen:
        raise ValueError(f"reward.verify_families: unknown or empty {unknown or text!r}; known: {', '.join(FAMILIES)}")
    return chosen


def draw_constraints(rng: random.Random, families: tuple[str, ...], count: int) -> list[dict]:
    """Up to `count` constraints of different instructions from the allowed families: [{"id", "kwargs"}]."""
    ids = [name for name in GENERATORS if family(name) in families]
    chosen = rng.sample(ids, min(count, len(ids)))
    return [{"id": name, "kwargs": GENERATORS[name](rng)} for name in chosen]


def describe(constraint: dict) -> str:
    """The instruction text IFEval's own class writes for these arguments."""
    from ..evals.ifeval import offline_checkers

    checker = offline_checkers()[constraint["id"]](constraint["id"])
    return checker.build_description(**constraint["kwargs"])


def constrained_prompt(prompt: str, constraints: list[dict]) -> str:
    """The prompt with its constraints' descriptions appended."""
    return " ".join([prompt.rstrip(), *(describe(c) for c in constraints)])


def met(prompt: str, constraints: list[dict], response: str) -> list[bool]:
    """Whether `response` meets each constraint (IFEval's loose rule)."""
    from ..evals.ifeval import check_response

    record = {"key": "verify", "prompt": prompt, "instruction_id_list": [c["id"] for c in constraints],
              "kwargs": [c["kwargs"] for c in constraints]}
    return check_response(record, response)["loose"]
