"""The same few seed prompts answered by every model of a run (M0..Mk), cached; and multi-turn chat with M_k."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..engines import EngineOptions, open_engine
from ..records import read_jsonl, write_jsonl_atomic
from ..runs import ModelSpec, completed_iterations, iteration_summary_of, resolve_model, run_config
from ..seeds import derive_seed
from ..templates import seed_prompts

FILE = "gallery.jsonl"
# One explanation, one maths word problem, one piece of writing: three different skills from the seed pool.
PROMPT_IDS = ("seed-172", "seed-100", "seed-064")


@dataclass(frozen=True)
class GallerySettings:
    max_tokens: int = 192
    temperature: float = 0.0  # greedy: the differences between models are the models', not the sampler's
    top_p: float = 1.0
    seed: int = 0


def gallery_prompts(ids: tuple[str, ...] = PROMPT_IDS) -> list[dict]:
    """The fixed gallery prompts (`id`, `category`, `prompt`) from the shipped seed pool."""
    pool = {p["id"]: p for p in seed_prompts()}
    chosen = [pool[i] for i in ids if i in pool]
    return chosen or list(seed_prompts()[: len(ids)])


def run_models(run_dir: str | Path) -> list[int]:
    """Model indices k of a run's M_0..M_k: the base plus one per complete iteration (manifest written)."""
    return [0, *completed_iterations(run_dir)]


def model_fingerprint(run_dir: str | Path, k: int) -> str | None:
    """The sha256 of M_k's adapter as its iteration manifest records it (None for M0): a cache key."""
    if k == 0:
        return None
    return iteration_summary_of(run_dir, k).get("adapter_gguf_sha256")


def model_spec(run_dir: str | Path | None, k: int | None = None, model: str | Path | None = None) -> ModelSpec:
    """M_k of a run (default k: the run's last model), or, without a run, the model file `model` (default: the
    embedded model)."""
    if run_dir is None:
        return resolve_model(model_path=model)
    return resolve_model(run_dir, k if k is not None else run_models(run_dir)[-1])


def load_engine(run_dir: str | Path | None, k: int | None = None, model: str | Path | None = None):
    """The engine of `model_spec(run_dir, k, model)`, with the run's `[model]` settings."""
    options = EngineOptions.from_config(run_config(run_dir).model)
    return open_engine(model_spec(run_dir, k, model), options)


def build_gallery(
    run_dir: str | Path,
    cache: str | Path,
    *,
    settings: GallerySettings = GallerySettings(),
    engine_for: Callable[[int], object] | None = None,
    event: Callable[[str], None] | None = None,
) -> list[dict]:
    """Answer the gallery prompts with each M_k; answers already in `cache` (same model and settings) are reused.

    `engine_for(k)` gives the engine of M_k (default: llama.cpp via `load_engine`); it is called only for models
    with an uncached answer, so a second report of the same run loads no model at all."""
    engine_for = engine_for or (lambda k: load_engine(run_dir, k))
    prompts = gallery_prompts()
    cached = {r["id"]: r for r in read_jsonl(cache)}
    records = []
    for k in run_models(run_dir):
        fingerprint = model_fingerprint(run_dir, k)
        wanted = [(p, f"M{k}-{p['id']}") for p in prompts]
        fresh = [(p, i) for p, i in wanted if not _valid(cached.get(i), fingerprint, settings)]
        if fresh:
            if event:
                event(f"gallery: M{k} answers {len(fresh)} prompt(s)")
            engine = engine_for(k)
            for p, i in fresh:
                cached[i] = answer(engine, p, k, fingerprint, settings)
            del engine
        records += [cached[i] for _, i in wanted]
    write_jsonl_atomic(cache, records)
    return records


def answer(engine, prompt: dict, k: int, fingerprint: str | None, settings: GallerySettings) -> dict:
    seed = derive_seed(settings.seed, "gallery", prompt["id"])
    out = engine.complete(engine.chat_prompt(prompt["prompt"]), max_tokens=settings.max_tokens,
                          temperature=settings.temperature, top_p=settings.top_p, seed=seed)
    return {"id": f"M{k}-{prompt['id']}", "k": k, "model": f"M{k}", "adapter_sha256": fingerprint,
            "prompt_id": prompt["id"], "prompt": prompt["prompt"], "response": out.text, "n_tokens": out.n_tokens,
            "finish_reason": out.finish_reason, "max_tokens": settings.max_tokens,
            "temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed}


def _valid(record: dict | None, fingerprint: str | None, settings: GallerySettings) -> bool:
    return record is not None and record.get("adapter_sha256") == fingerprint and all(
        record.get(name) == getattr(settings, name) for name in ("max_tokens", "temperature", "top_p", "seed"))


@dataclass
class Conversation:
    """A multi-turn chat with one engine; the oldest turns are dropped when the history outgrows the context."""

    engine: object
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int = 0
    messages: list[dict] = field(default_factory=list)
    turns: int = 0

    def reset(self) -> None:
        self.messages = []

    def say(self, text: str) -> tuple[str, int]:
        """The model's reply to `text` (added to the history) and how many old turns were dropped to fit."""
        self.messages.append({"role": "user", "content": text})
        dropped = self._fit()
        prompt = self.engine.render_chat(self.messages)
        self.turns += 1
        out = self.engine.complete(prompt, max_tokens=self.max_tokens, temperature=self.temperature,
                                   top_p=self.top_p, seed=derive_seed(self.seed, "chat", self.turns))
        reply = out.text.strip()
        self.messages.append({"role": "assistant", "content": reply})
        return reply, dropped

    def _fit(self) -> int:
        """Drop the oldest (user, assistant) turns until the prompt leaves room for `max_tokens` of reply."""
        context = getattr(self.engine, "context_length", None)
        if context is None:
            return 0
        limit = context - self.max_tokens
        dropped = 0
        while len(self.messages) > 2 and len(self.engine.encode(self.engine.render_chat(self.messages))) > limit:
            self.messages = self.messages[2:]
            dropped += 1
        return dropped
