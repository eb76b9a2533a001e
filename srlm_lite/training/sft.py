"""`srlm-lite sft`: supervised LoRA fine-tuning in MLX (loss on response tokens only), the paper's seed stage.

Instruction fine-tuning (IFT) examples and evaluation fine-tuning (EFT) examples (judge prompt -> justification
and score, see `eft.py`) are mixed, shuffled and trained on; the adapter is saved as mlx-lm does and exported
as a GGUF LoRA, so `srlm-lite iterate --init DIR` samples and judges with this M1 and trains on from it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import SFTConfig, TrainConfig, to_dict
from ..errors import InputError
from ..evals.prompts import prompt_text, read_jsonl_records
from ..hooks import Progress
from ..mlx_runtime import mx
from ..models.tokenizer import ChatTokenizer
from ..records import write_json_atomic
from ..runs import ADAPTER_DIR, GGUF_ADAPTER
from ..seeds import derive_seed
from .logps import sequence_logps
from .loop import train_lora

LOG_FILE = "sft_log.jsonl"
RESPONSE_FIELDS = ("response", "output", "completion")


@dataclass(frozen=True)
class Example:
    id: str
    tokens: list[int]
    prompt_len: int

    @property
    def response_tokens(self) -> int:
        return len(self.tokens) - self.prompt_len


def load_examples(path: str | Path, source: str) -> list[dict]:
    """{"id", "prompt", "response", "source"} from JSONL with `prompt`/`instruction` and `response`/`output`."""
    examples = []
    for record in read_jsonl_records(path):
        prompt = prompt_text(record)
        response = next((record[k] for k in RESPONSE_FIELDS if isinstance(record.get(k), str)), None)
        if prompt is None or not response or not response.strip():
            raise InputError(f"{path}:{record['_line']}: need `prompt` (or `instruction`) and `response` "
                             f"(or `output`)")
        examples.append({"id": f"{source}-{record['_line']}", "prompt": prompt, "response": response.strip(),
                         "source": source})
    return examples


def tokenize(examples: list[dict], tokenizer: ChatTokenizer, max_length: int) -> tuple[list[Example], int]:
    """Chat-templated prompt + response + EOS, exactly as the sampler sees them; too long ones are skipped."""
    out, skipped = [], 0
    for example in examples:
        tokens, prompt_len = tokenizer.sequence(example["prompt"], example["response"], finished=True)
        if len(tokens) > max_length:
            skipped += 1
            continue
        out.append(Example(example["id"], tokens, prompt_len))
    return out, skipped


def nll_loss(summed_logps: mx.array, response_tokens: mx.array) -> mx.array:
    """Token-level mean negative log-likelihood of a batch: -sum of log-probs / number of response tokens."""
    return -summed_logps.sum() / mx.maximum(response_tokens.sum().astype(mx.float32), 1.0)


def batch_loss(model, batch: list[Example], pad_id: int) -> tuple[mx.array, int]:
    width = max(len(e.tokens) for e in batch)
    tokens = mx.array([e.tokens + [pad_id] * (width - len(e.tokens)) for e in batch], dtype=mx.int32)
    logps = sequence_logps(model, tokens, mx.array([e.prompt_len for e in batch]),
                           mx.array([len(e.tokens) for e in batch]))
    n = mx.array([e.response_tokens for e in batch])
    return nll_loss(logps, n), sum(e.response_tokens for e in batch)


def batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[Example]]:
    """Length-bucketed batches (little padding), visited in a seeded random order each epoch."""
    ordered = sorted(examples, key=lambda e: len(e.tokens))
    chunks = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    random.Random(derive_seed(seed, "sft-epoch", epoch)).shuffle(chunks)
    return chunks


def run(examples: list[dict], out_dir: Path, config: SFTConfig, *, base_model: Path,
        progress: Progress | None = None, chat_template: str | None = None) -> dict:
    """Train a LoRA on the examples from the base model; save, export for llama.cpp, log every step."""
    from .policy import open_policy, save_policy

    out_dir = Path(out_dir)
    adapter_dir = out_dir / ADAPTER_DIR
    if (adapter_dir / GGUF_ADAPTER).exists():
        raise FileExistsError(f"{adapter_dir} already holds an adapter; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model, tokenizer, lora_config = open_policy(base_model, None, _as_train_config(config), chat_template=chat_template,
                                                seed=derive_seed(config.seed, "sft-lora"))
    tokenized, skipped = tokenize(examples, tokenizer, config.max_length)
    if not tokenized:
        raise ValueError(f"no example fits max_length={config.max_length} tokens")
    pad_id = tokenizer.eos_token_id
    loss_start = _mean_loss(model, tokenized, config.batch_size, pad_id)
    records = train_lora(model, [batches(tokenized, config.batch_size, config.seed, e) for e in range(config.epochs)],
                         lambda m, batch: (batch_loss(m, batch, pad_id)[0], {}),
                         learning_rate=config.learning_rate, log_path=out_dir / LOG_FILE,
                         describe=lambda batch: {"response_tokens": sum(e.response_tokens for e in batch),
                                                 "tokens": sum(len(e.tokens) for e in batch)},
                         stage="sft", progress=progress)
    loss_end = _mean_loss(model, tokenized, config.batch_size, pad_id)
    save_policy(model, adapter_dir, lora_config, base_model)
    train_seconds = sum(r["seconds"] for r in records)
    summary = {"examples": len(tokenized), "skipped_too_long": skipped, "by_source": _count_sources(examples),
               "steps": len(records), "loss_start": round(loss_start, 4), "loss_end": round(loss_end, 4),
               "tokens_per_second": round(sum(r["tokens"] for r in records) / train_seconds, 1)
               if train_seconds else None,
               "adapter": str(adapter_dir), "base_model": str(base_model), "config": to_dict(config),
               "seconds": round(time.perf_counter() - started, 1)}
    write_json_atomic(out_dir / "sft_summary.json", summary)
    return summary


def _as_train_config(config: SFTConfig) -> TrainConfig:
    """The LoRA settings of an SFT config, in the form `open_policy` takes (float32 weights)."""
    return TrainConfig(lora_rank=config.lora_rank, lora_scale=config.lora_scale, lora_layers=config.lora_layers,
                       dequantize=True)


def _count_sources(examples: list[dict]) -> dict[str, int]:
    sources: dict[str, int] = {}
    for e in examples:
        sources[e["source"]] = sources.get(e["source"], 0) + 1
    return sources


def _mean_loss(model, examples: list[Example], batch_size: int, pad_id: int) -> float:
    """Token-level NLL over all examples (no gradient)."""
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        loss, n = batch_loss(model, examples[i:i + batch_size], pad_id)
        total += float(loss) * n
        count += n
    return total / count
