"""The `expected` judge taught at scale (`srlm-lite eft train`): EFT on thousands of judge prompts on a laptop CPU.

An example is a judge prompt (the rubric, the question, the answer, the forced `Score: `) and one target token: the
score digit, exactly the token the `expected` judge reads. What makes thousands of them affordable:
- the rubric prefix: the prompts' shared leading tokens (chat template and rubric, ~220 tokens) are run once, under
  the current LoRA, and their keys/values held constant for `refresh_every` optimizer steps (no gradient through
  them); each step runs only the tails (question, answer, closing lines); `refresh_every` = 0 trains exactly;
- truncation: answers longer than a token cap are cut at build time and marked (`TRUNCATION_MARK`, see `render`);
- the loss on the score digit only: the LM head runs on each prompt's last position only;
- LoRA on the top `lora_layers` blocks only: the blocks below need no backward pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..config import EFTTrainConfig, TrainConfig, to_dict
from ..hooks import Progress
from ..judging.rubric import FORCED_PREFIX, SCORE_TOKENS, digits_to_verdict, render_untrusted
from ..mlx_runtime import mx
from ..records import write_json_atomic
from ..runs import ADAPTER_DIR, GGUF_ADAPTER
from ..seeds import derive_seed
from .eft import LABEL_SCORES, MAX_RESPONSE_TOKENS, TRUNCATION_MARK
from .loop import load_checkpoint, plan_fingerprint, train_lora
from .sft import batches

LOG_FILE = "eft_log.jsonl"
SUMMARY_FILE = "eft_summary.json"
CHECKPOINT_FILE = "eft_checkpoint.safetensors"  # removed once the adapter is saved
SCORE_PREFIX = FORCED_PREFIX.lstrip("\n")  # "Score: ", appended to the templated prompt as the expected judge does


# ------------------------------------------------------------------------------------------- judge prompts
class TokenizerJudge:
    """The part of an engine the rubric's prompt needs (its tokenizer and chat template), for training without one:
    `rubric.judge_prompt` / `render_untrusted` accept it, so the trained prompt is the judged prompt."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def chat_prompt(self, user: str) -> str:
        return self.tokenizer.prompt_text(user)


def truncate(tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    """`text` cut to its first `max_tokens` tokens and marked with TRUNCATION_MARK, or unchanged; (text, cut)."""
    ids = tokenizer.encode(text, special=False, add_bos=False)
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return text, False
    return tokenizer.decode(ids[:max_tokens]).rstrip() + TRUNCATION_MARK, True


def make_render(tokenizer, max_response_tokens: int = MAX_RESPONSE_TOKENS) -> Callable[[str, str], tuple[str, bool]]:
    """render(instruction, response) -> (the judge's user message, truncated): the rubric template filled as the
    judge fills it (`rubric.render_untrusted`), the answer cut at `max_response_tokens` tokens (0 = never)."""
    judge = TokenizerJudge(tokenizer)

    def render(instruction: str, response: str) -> tuple[str, bool]:
        response, cut = truncate(tokenizer, response, max_response_tokens)
        return render_untrusted(judge, "judge", instruction=instruction, response=response), cut

    return render


def judge_tokens(tokenizer, user_text: str) -> list[int]:
    """The tokens the `expected` judge runs: the templated judge prompt followed by `Score: `."""
    return tokenizer.encode(tokenizer.prompt_text(user_text) + SCORE_PREFIX)


def digit_ids(tokenizer) -> list[int]:
    """The token of each score digit 0-5 (each must be one token)."""
    ids = [tokenizer.encode(d, special=False, add_bos=False) for d in SCORE_TOKENS]
    if any(len(i) != 1 for i in ids):
        raise ValueError("a score digit is not a single token in this vocabulary")
    return [i[0] for i in ids]


@dataclass(frozen=True)
class ScoreExample:
    id: str
    tokens: tuple[int, ...]  # the judge prompt, ending with `Score: `
    target: int  # the score digit's token
    score: int


def load_score_examples(path: str | Path, limit: int | None = None) -> list[dict]:
    """EFT records with a judge user message (`prompt`) and an integer score (`score`, else the `Score: X` that
    ends `response`), as `eft build` writes them."""
    from ..errors import InputError
    from ..evals.prompts import read_jsonl_records
    from ..judging.scores import parse_score

    examples = []
    for record in read_jsonl_records(path, limit):
        score = record.get("score")
        if not isinstance(score, int) and isinstance(record.get("response"), str):
            parsed = parse_score(record["response"])
            score = int(parsed) if parsed is not None and parsed == int(parsed) else None
        if not isinstance(record.get("prompt"), str) or not isinstance(score, int) or not 0 <= score <= 5:
            raise InputError(f"{path}:{record['_line']}: an EFT example needs `prompt` (the judge's user message) "
                             f"and an integer `score` 0-5 (or a `response` ending with 'Score: X')")
        examples.append({"id": f"eft-{record['_line']}", "prompt": record["prompt"], "score": score})
    return examples


def tokenize_examples(examples: list[dict], tokenizer, max_length: int) -> tuple[list[ScoreExample], int]:
    """EFT records ({"prompt": judge user message, "score": 0-5}) as token lists; too long ones are skipped."""
    digits = digit_ids(tokenizer)
    out, skipped = [], 0
    for i, e in enumerate(examples):
        tokens = judge_tokens(tokenizer, e["prompt"])
        if len(tokens) > max_length:
            skipped += 1
            continue
        out.append(ScoreExample(str(e.get("id", i)), tuple(tokens), digits[int(e["score"])], int(e["score"])))
    return out, skipped


def shared_prefix(token_lists: Sequence[Sequence[int]]) -> int:
    """The number of leading tokens every list shares, leaving at least one token of each (the rubric prefix)."""
    if not token_lists:
        return 0
    first, n = token_lists[0], min(len(t) for t in token_lists) - 1
    for tokens in token_lists[1:]:
        n = min(n, next((i for i, (a, b) in enumerate(zip(first[:n], tokens)) if a != b), n))
    return max(n, 0)


# --------------------------------------------------------------------------------- the prefix's KV cache
class FixedPrefix:
    """One layer's cache holding a constant prefix's keys/values (batch 1, broadcast to the batch): the model runs
    only the tails, at positions after the prefix, attending to it (an mlx-lm cache: `offset`, `update_and_fetch`,
    `make_mask`)."""

    def __init__(self, keys: mx.array, values: mx.array):
        self.keys, self.values, self.offset = keys, values, keys.shape[2]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        shape = (keys.shape[0], *self.keys.shape[1:])
        return (mx.concatenate([mx.broadcast_to(self.keys, shape), keys], axis=2),
                mx.concatenate([mx.broadcast_to(self.values, shape), values], axis=2))

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None):
        from mlx_lm.models.cache import create_attention_mask

        return create_attention_mask(n, self.offset, return_array, window_size)


class PrefixKV:
    """The rubric prefix's keys/values under the model's current weights, recomputed every `refresh_every` steps."""

    def __init__(self, model, tokens: Sequence[int], refresh_every: int):
        self.model, self.tokens, self.refresh_every = model, list(tokens), refresh_every
        self.refreshes, self.seconds, self.kv = 0, 0.0, []
        self.refresh()

    @property
    def length(self) -> int:
        return len(self.tokens)

    def refresh(self) -> None:
        from mlx_lm.models.cache import make_prompt_cache

        started = time.perf_counter()
        cache = make_prompt_cache(self.model)
        self.model(mx.array([self.tokens]), cache=cache)
        self.kv = [(c.keys[..., :self.length, :], c.values[..., :self.length, :]) for c in cache]
        mx.eval(self.kv)
        self.refreshes += 1
        self.seconds += time.perf_counter() - started

    def after_step(self, step: int) -> None:
        if self.refresh_every > 0 and step % self.refresh_every == 0:
            self.refresh()

    def caches(self) -> list[FixedPrefix]:
        return [FixedPrefix(k, v) for k, v in self.kv]


# ------------------------------------------------------------------------------------- forward and loss
def _head(model):
    """The LM head applied to final hidden states, or None where the model's call is not the common
    `model.model(...)` then head (then the whole model runs, logits at every position)."""
    inner = getattr(model, "model", None)
    if inner is None or getattr(model, "model_type", getattr(getattr(model, "args", None), "model_type", None)) \
            not in ("llama", "qwen2", "qwen3", "phi3", "gemma3_text"):
        return None
    return model.lm_head if "lm_head" in model else inner.embed_tokens.as_linear


def last_logits(model, batch: Sequence[ScoreExample], prefix: PrefixKV | None) -> mx.array:
    """Logits (B, vocab) at each prompt's last position (the token after `Score: `): the tails right-padded (causal,
    so padding after a prompt's end cannot reach it) and run on the prefix cache, or whole prompts without one."""
    start = prefix.length if prefix is not None else 0
    tails = [list(e.tokens[start:]) for e in batch]
    width = max(len(t) for t in tails)
    x = mx.array([t + [t[-1]] * (width - len(t)) for t in tails], dtype=mx.int32)
    last = mx.array([len(t) - 1 for t in tails])
    rows = mx.arange(len(tails))
    caches = prefix.caches() if prefix is not None else None
    head = _head(model)
    if head is None:
        return model(x, cache=caches)[rows, last].astype(mx.float32)
    return head(model.model(x, cache=caches)[rows, last]).astype(mx.float32)


def score_loss(model, batch: Sequence[ScoreExample], prefix: PrefixKV | None,
               digits: Sequence[int]) -> tuple[mx.array, dict]:
    """Cross-entropy of the target digit after `Score: ` (mean over the batch) and the share of prompts whose most
    likely digit is the target."""
    logits = last_logits(model, batch, prefix)
    targets = mx.array([e.target for e in batch])
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    loss = -mx.take_along_axis(logp, targets[:, None], axis=-1).mean()
    best = mx.array(list(digits))[mx.argmax(logp[:, mx.array(list(digits))], axis=-1)]
    return loss, {"digit_accuracy": (best == targets).astype(mx.float32).mean()}


def expected_scores(model, token_lists: Sequence[Sequence[int]], digits: Sequence[int], *, batch_size: int = 16,
                    min_mass: float = 0.5, progress: Progress | None = None) -> list[float | None]:
    """The `expected` judge's score of each prompt (ending with `Score: `), computed in MLX on the shared prefix's
    cache (no gradient): one forward pass of each tail, batched by length."""
    examples = [ScoreExample(str(i), tuple(t), 0, 0) for i, t in enumerate(token_lists)]
    n_prefix = shared_prefix(token_lists)
    prefix = PrefixKV(model, examples[0].tokens[:n_prefix], 0) if n_prefix else None
    scores: list[float | None] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].tokens))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        logits = last_logits(model, [examples[i] for i in chunk], prefix)
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        rows = logp[:, mx.array(list(digits))].tolist()
        for i, row in zip(chunk, rows):
            scores[i] = digits_to_verdict({d: lp for d, lp in zip(SCORE_TOKENS, row)}, min_mass)["score"]
        if progress:
            progress("expected judge", min(start + batch_size, len(order)), len(order))
    return scores


# ------------------------------------------------------------------------------------------ EFT from labels
def build_from_labels(pairs: list[dict], way: str, spec, *, max_response_tokens: int = MAX_RESPONSE_TOKENS,
                      label_scores: tuple[int, int] = LABEL_SCORES, batch_size: int = 16,
                      progress: Progress | None = None) -> tuple[list[dict], dict]:
    """EFT examples of one way (`eft.WAYS`) from labelled pairs, judge prompts rendered for `spec`'s tokenizer and
    answers cut at `max_response_tokens`; `labels`/`balanced` give the preferred answer `label_scores[0]` and the
    other `label_scores[1]`; `agreeing` first scores both answers of every pair with `spec`'s own `expected` judge
    (MLX, one forward pass per answer on the rubric's cache)."""
    from ..models.loading import mlx_model_for, tokenizer_for
    from .eft import from_labels

    started = time.perf_counter()
    tokenizer = tokenizer_for(spec)
    render = make_render(tokenizer, max_response_tokens)
    scores = None
    if way == "agreeing":
        keys = [(p["index"], side) for p in pairs for side in ("a", "b")]
        by_index = {p["index"]: p for p in pairs}
        prompts = [judge_tokens(tokenizer, render(by_index[i]["instruction"], by_index[i][f"response_{side}"])[0])
                   for i, side in keys]
        model = mlx_model_for(spec, dequantize=True)
        scores = dict(zip(keys, expected_scores(model, prompts, digit_ids(tokenizer), batch_size=batch_size,
                                                progress=progress)))
    examples, stats = from_labels(pairs, way, render, scores, label_scores)
    if scores is not None:
        stats["judge_accuracy"] = own_accuracy(pairs, scores)
    if way != "agreeing":
        stats["label_scores"] = list(label_scores)
    return examples, {**stats, "max_response_tokens": max_response_tokens,
                      "seconds": round(time.perf_counter() - started, 1)}


def own_accuracy(pairs: list[dict], scores: dict[tuple, float | None]) -> float | None:
    """How often the scores rank the preferred answer first (ties and missing scores count half), as `eval judge`
    counts accuracy: the scoring judge's own accuracy on the pairs it built EFT from."""
    credit = []
    for p in pairs:
        other = "b" if p["preferred"] == "a" else "a"
        mine, theirs = scores.get((p["index"], p["preferred"])), scores.get((p["index"], other))
        credit.append(0.5 if mine is None or theirs is None or mine == theirs else float(mine > theirs))
    return round(sum(credit) / len(credit), 4) if credit else None


# --------------------------------------------------------------------------------------------- training
def train(examples: list[dict], out_dir: Path, config: EFTTrainConfig, *, base_model: Path,
          progress: Progress | None = None, chat_template: str | None = None) -> dict:
    """Train a LoRA judge on score examples from the base model; save it for both engines, log every step."""
    from .policy import open_policy, save_policy

    out_dir, started = Path(out_dir), time.perf_counter()
    if (out_dir / ADAPTER_DIR / GGUF_ADAPTER).exists():
        raise FileExistsError(f"{out_dir / ADAPTER_DIR} already holds an adapter; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    model, tokenizer, lora_config = open_policy(
        base_model, None, TrainConfig(lora_rank=config.lora_rank, lora_scale=config.lora_scale,
                                      lora_layers=config.lora_layers, dequantize=True),
        seed=derive_seed(config.seed, "eft-lora"), chat_template=chat_template)
    tokenized, skipped = tokenize_examples(examples, tokenizer, config.max_length)
    if not tokenized:
        raise ValueError(f"no example fits max_length={config.max_length} tokens")
    records, prefix = fit(model, tokenized, config, digit_ids(tokenizer), out_dir / LOG_FILE, progress,
                          checkpoint=out_dir / CHECKPOINT_FILE, fingerprint=str(base_model))
    save_policy(model, out_dir / ADAPTER_DIR, lora_config, base_model)
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    summary = {"examples": len(tokenized), "skipped_too_long": skipped,
               "scores": _count(e.score for e in tokenized), **speed_summary(records, prefix),
               "adapter": str(out_dir / ADAPTER_DIR), "base_model": str(base_model), "config": to_dict(config),
               "seconds": round(time.perf_counter() - started, 1)}
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    return summary


def fit(model, tokenized: list[ScoreExample], config: EFTTrainConfig, digits: Sequence[int], log_path: Path,
        progress: Progress | None = None, checkpoint: Path | None = None,
        fingerprint: str = "") -> tuple[list[dict], PrefixKV | None]:
    """The training loop (`loop.train_lora`) on length-bucketed batches; returns the step records and the prefix
    cache (None when training exactly). The prefix is refreshed after the steps `progress` is told of. With
    `checkpoint` (a file) a run saved there for the same examples, settings and `fingerprint` (the base model)
    resumes: its weights are loaded before the prefix is computed, and checkpoints fall on refresh steps, so it
    continues the run exactly."""
    plan = [batches(tokenized, config.batch_size, config.seed, e) for e in range(config.epochs)]
    every = checkpoint_interval(config) if checkpoint is not None else 0
    if every:
        from ..mlx_runtime import optim

        key = plan_fingerprint(plan, config.learning_rate, f"eft|{config!r}|{fingerprint}")  # as train_lora does
        load_checkpoint(checkpoint, model, optim.Adam(learning_rate=config.learning_rate), key)
    n_prefix = shared_prefix([e.tokens for e in tokenized])
    prefix = PrefixKV(model, tokenized[0].tokens[:n_prefix], config.refresh_every) \
        if config.refresh_every > 0 and n_prefix else None

    def after_step(stage: str, step: int, total: int) -> None:
        if prefix is not None:
            prefix.after_step(step)
        if progress:
            progress(stage, step, total)

    start = prefix.length if prefix else 0
    records = train_lora(
        model, plan, lambda m, batch: score_loss(m, batch, prefix, digits), learning_rate=config.learning_rate,
        log_path=log_path, stage="eft", progress=after_step, checkpoint=checkpoint, checkpoint_every=every,
        fingerprint=f"{config!r}|{fingerprint}",
        describe=lambda batch: {"examples": len(batch), "tail_tokens": sum(len(e.tokens) - start for e in batch),
                                "tokens": sum(len(e.tokens) for e in batch),
                                "padded_tokens": len(batch) * max(len(e.tokens) - start for e in batch)})
    return records, prefix


def checkpoint_interval(config: EFTTrainConfig) -> int:
    """Steps between checkpoints: `checkpoint_every` rounded up to a multiple of `refresh_every` (0 = none)."""
    every, refresh = config.checkpoint_every, config.refresh_every
    return every if every <= 0 or refresh <= 0 else -(-every // refresh) * refresh


def speed_summary(records: list[dict], prefix: PrefixKV | None) -> dict:
    """Steps, the loss at the start and the end (mean of the first and last tenth of the steps), and the speed:
    prompt tokens per second (as if each prompt were run whole) and tail tokens per second (what was run), the
    prefix's refreshes included in the time."""
    seconds = sum(r["seconds"] for r in records) + (prefix.seconds if prefix else 0.0)
    tenth = max(1, len(records) // 10)
    return {"steps": len(records), "prefix_tokens": prefix.length if prefix else 0,
            "prefix_refreshes": prefix.refreshes if prefix else 0,
            "loss_start": round(sum(r["loss"] for r in records[:tenth]) / tenth, 4),
            "loss_end": round(sum(r["loss"] for r in records[-tenth:]) / tenth, 4),
            "digit_accuracy_end": round(sum(r["digit_accuracy"] for r in records[-tenth:]) / tenth, 4),
            "prompt_tokens": sum(r["tokens"] for r in records),
            "tail_tokens": sum(r["tail_tokens"] for r in records),
            "train_seconds": round(seconds, 1),
            "prompt_tokens_per_second": round(sum(r["tokens"] for r in records) / seconds, 1) if seconds else None,
            "tail_tokens_per_second": round(sum(r["tail_tokens"] for r in records) / seconds, 1) if seconds else None,
            "refresh_seconds": round(prefix.seconds, 1) if prefix else 0.0}


def _count(values) -> dict:
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items()))
