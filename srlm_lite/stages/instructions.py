"""Stage 1, self-instruction: the model writes new prompts few-shot from the seed pool; dedup and filters."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ..config import InstructionsConfig
from ..engines.base import Engine
from ..errors import InputError
from ..evals.prompts import read_prompts
from ..hooks import Progress
from ..models.untrusted import control_tokens_of, neutralize, template_tags
from ..records import StageFile, read_jsonl, recorded_stage
from ..runs import iteration_dir
from ..seeds import derive_seed
from ..templates import load_template, seed_prompts
from .dedup import RougeDeduplicator
from .fit import TOO_LONG, fits

FILE = "instructions.jsonl"
FIELDS = {"id": str, "prompt": str, "kept": bool}  # what a record must hold for the next stage
END_TAG = "</task>"
# Self-Instruct's blacklist: a text-only model cannot do these.
BLACKLIST = (
    "image", "images", "picture", "pictures", "photo", "graph", "graphs", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram", "url", "link", "website",
)
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b", re.IGNORECASE)


def few_shot_prompt(shots: list[str]) -> str:
    """The self-instruct prompt: the few-shot tasks, each in <task> tags, then an open tag for the new one."""
    examples = "".join(f"<task>\n{text.strip()}\n{END_TAG}\n" for text in shots)
    return load_template("self_instruct").render(examples=examples)


def clean(text: str) -> str:
    text = text.split(END_TAG)[0]
    return text.strip().strip("<>").strip()


def filter_reason(text: str, finished: bool, config: InstructionsConfig) -> str | None:
    """Why a generated prompt is dropped (None = keep): unfinished, length, blacklist, or a bad start."""
    if not finished:
        return "unfinished"
    words = text.split()
    if len(words) < config.min_words:
        return "too_short"
    if len(words) > config.max_words:
        return "too_long"
    if _BLACKLIST_RE.search(text):
        return "blacklisted"
    if not text[0].isalnum() or "<task>" in text or "<" in text[:2]:
        return "bad_start"
    return None


@dataclass
class Picker:
    """Draws the 8 few-shot examples: 6 from the seeds, 2 from those generated so far (seeds fill in early)."""

    seeds: list[str]
    config: InstructionsConfig

    def examples(self, generated: list[str], rng: random.Random) -> list[str]:
        n_gen = min(self.config.generated_shots, len(generated))
        n_seed = self.config.seed_shots + self.config.generated_shots - n_gen
        shots = rng.sample(self.seeds, min(n_seed, len(self.seeds))) + rng.sample(generated, n_gen)
        rng.shuffle(shots)
        return shots


def seed_pool(config: InstructionsConfig) -> list[str]:
    """The seed prompts the few-shot examples are drawn from: `seed_file` (JSONL, one `prompt` or `instruction` a
    line), else the pool shipped with srlm-lite. A file that is empty, or has a bad line, raises InputError."""
    if not config.seed_file:
        return [s["prompt"] for s in seed_prompts()]
    path = Path(config.seed_file).expanduser()
    if path.is_file() and not path.read_bytes().strip():
        raise InputError(f"the seed pool {path} is empty: give at least one prompt, one JSON object a line "
                         f'({{"prompt": "..."}})')
    return [item["prompt"].strip() for item in read_prompts(path)]


def run(ctx) -> dict:
    """Stage 1 of iteration t: M_t writes new prompts; earlier iterations' kept prompts are few-shot material."""
    return self_instruct(ctx.engine, ctx.dir, ctx.config.instructions, seeds=seed_pool(ctx.config.instructions),
                         previous=previous_prompts(ctx.paths.root, ctx.t), run_seed=ctx.config.seed, iteration=ctx.t,
                         progress=ctx.hooks.progress)


def previous_prompts(root: Path, t: int) -> list[str]:
    """The prompts kept in iterations 1..t-1 of a run."""
    kept = []
    for earlier in range(1, t):
        records = read_jsonl(iteration_dir(root, earlier) / FILE)
        kept += [r["prompt"] for r in records if r["kept"]]
    return kept


def self_instruct(
    engine: Engine,
    out_dir: Path,
    config: InstructionsConfig,
    *,
    seeds: list[str],
    previous: list[str],
    run_seed: int,
    iteration: int,
    progress: Progress | None = None,
) -> dict:
    """Generate until `num_prompts` are kept or attempts run out; every attempt is a record (kept or why not).

    `previous` holds prompts kept in earlier iterations: they are few-shot material and dedup targets.
    """

    def produce(stage: StageFile, done: dict) -> None:
        attempts = [done[k] for k in sorted(done, key=lambda k: done[k]["attempt"])]
        kept = [r["prompt"] for r in attempts if r["kept"]]
        dedup = RougeDeduplicator(config.rouge_threshold, list(seeds) + list(previous) + kept)
        picker = Picker(list(seeds), config)
        max_attempts = config.max_attempts or 4 * config.num_prompts
        for attempt in range(len(attempts), max_attempts):
            if len(kept) >= config.num_prompts:
                break
            record = _attempt(engine, picker, dedup, previous + kept, config, run_seed, iteration, attempt)
            stage.append(record)
            if record["kept"]:
                kept.append(record["prompt"])
                dedup.add(record["prompt"])
            if progress:
                progress("instructions", len(kept), config.num_prompts)

    return recorded_stage(out_dir / FILE, produce, summarize)


def _attempt(engine, picker, dedup, generated, config, run_seed, iteration, attempt) -> dict:
    seed = derive_seed(run_seed, iteration, "instructions", attempt)
    rng = random.Random(seed)
    guard = template_tags(load_template("self_instruct").text) + control_tokens_of(engine)
    prompt = few_shot_prompt([neutralize(shot, guard) for shot in picker.examples(generated, rng)])
    if not fits(engine, prompt, 1):  # seed prompts too long for the context: counted as a dropped attempt
        return {"id": f"it{iteration}-a{attempt:04d}", "attempt": attempt, "prompt": "", "kept": False,
                "reason": TOO_LONG, "rouge_l_max": 0.0, "seed": seed}
    completion = engine.complete(
        prompt,
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=seed,
        stop=[END_TAG, "<task>"],
    )
    text = clean(completion.text)
    reason = filter_reason(text, completion.finish_reason == "stop", config)
    similarity = dedup.max_similarity(text) if text else 0.0
    if reason is None and similarity > config.rouge_threshold:
        reason = "duplicate"
    return {
        "id": f"it{iteration}-a{attempt:04d}",
        "attempt": attempt,
        "prompt": text,
        "kept": reason is None,
        "reason": reason,
        "rouge_l_max": round(similarity, 4),
        "seed": seed,
    }


def kept_prompts(records: list[dict]) -> list[dict]:
    """The kept prompts as stage-2 inputs: {"id", "prompt"}."""
    return [{"id": r["id"], "prompt": r["prompt"]} for r in records if r["kept"]]


def summarize(records: list[dict], seconds: float) -> dict:
    reasons: dict[str, int] = {}
    for r in records:
        if not r["kept"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {
        "generated": len(records),
        "kept": sum(r["kept"] for r in records),
        "dropped": reasons,
        TOO_LONG: reasons.get(TOO_LONG, 0),
        "seconds": round(seconds, 2),
    }
