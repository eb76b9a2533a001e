"""The same LoRA DPO step in PyTorch + PEFT on the CPU, for `srlm-lite bench`'s `training_torch` figure.

Needs the `bench` extra (torch, transformers, peft), imported inside functions so this module imports without it.
The model is ours: the embedded GGUF dequantized by MLX, copied into a float32 `LlamaForCausalLM` (nothing from a hub).
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

import numpy as np

from ..config import TrainConfig
from ..seeds import derive_seed

EXTRA_PACKAGES = ("torch", "transformers", "peft")


def available() -> str | None:
    """None when torch, transformers and peft import; else why not, in a few words."""
    import importlib

    for name in EXTRA_PACKAGES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an absent package, or a broken install
            return f"{name} not importable ({type(exc).__name__}: {exc})"
    return None


def _unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order (rope on interleaved pairs) for HF's rope on halves (rotate_half)."""
    shape = weight.shape
    return weight.reshape(n_heads, shape[0] // n_heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def hf_config(args):
    """A float32 `LlamaConfig` from mlx-lm's llama ModelArgs (ours come from the GGUF's metadata: `model_args`)."""
    from transformers import LlamaConfig

    if args.rope_scaling:
        raise ValueError("rope scaling is not carried over to the PyTorch model")
    return LlamaConfig(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_hidden_layers, num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads,
        head_dim=args.head_dim or args.hidden_size // args.num_attention_heads,
        max_position_embeddings=args.max_position_embeddings or 2048, rms_norm_eps=args.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(args.rope_theta)},
        tie_word_embeddings=args.tie_word_embeddings, attention_bias=args.attention_bias, mlp_bias=args.mlp_bias,
        dtype="float32", attn_implementation="sdpa",
    )


def torch_from_mlx(mlx_model):
    """A float32 CPU `LlamaForCausalLM` holding a (float32, frozen) mlx-lm llama model's weights."""
    import torch
    from transformers import LlamaForCausalLM

    from ..mlx_runtime import tree_flatten

    args = mlx_model.args
    heads = {"q_proj": args.num_attention_heads, "k_proj": args.num_key_value_heads}
    state = {}
    for name, value in tree_flatten(mlx_model.parameters()):
        array = np.array(value, dtype=np.float32)
        module = name.split(".")[-2]
        if args.rope_traditional and module in heads:
            array = _unpermute(array, heads[module])
        state[name] = torch.from_numpy(np.ascontiguousarray(array))
    model = LlamaForCausalLM(hf_config(args)).float()
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if args.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise ValueError(f"MLX -> PyTorch weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if tied and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise ValueError("the PyTorch model did not tie lm_head to the embeddings")
    return model.eval().requires_grad_(False)


def torch_llama(model_path: str | Path | None = None):
    """Our model (a GGUF, the embedded one by default) as a float32 CPU `LlamaForCausalLM`, via MLX's dequantization."""
    from ..models.mlx_model import load_mlx_model

    return torch_from_mlx(load_mlx_model(model_path, dequantize=True))


def attach_peft_lora(model, config: TrainConfig):
    """PEFT LoRA on the modules and blocks `lora.attach_lora` picks; alpha = scale x rank gives mlx-lm's scale."""
    from peft import LoraConfig, get_peft_model

    from ..training.lora import DEFAULT_KEYS

    n_layers = model.config.num_hidden_layers
    chosen = n_layers if config.lora_layers < 0 else min(config.lora_layers, n_layers)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_scale * config.lora_rank, lora_dropout=0.0,
                      target_modules=list(DEFAULT_KEYS), layers_to_transform=list(range(n_layers - chosen, n_layers)),
                      layers_pattern="layers", bias="none")
    with warnings.catch_warnings():  # transformers 5 deprecation notices raised inside peft
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, lora)


def token_logps(model, tokens):
    """log p(token t+1 | tokens up to t) for every position of each row (the twin of `train.sequence_logps`)."""
    import torch

    logits = model(input_ids=tokens[:, :-1], use_cache=False).logits.float()
    picked = torch.gather(logits, -1, tokens[:, 1:, None]).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def batch_logps(model, batch, pad_id: int):
    """Summed response-token log-probs of a batch's chosen and rejected rows (prompt and padding masked)."""
    import torch

    from ..training.dpo import collate

    tokens, prompt_lens, lengths = (torch.from_numpy(np.array(a)).long() for a in collate(batch, pad_id))
    logps = token_logps(model, tokens)
    positions = torch.arange(logps.shape[1])[None, :]
    mask = (positions >= prompt_lens[:, None] - 1) & (positions < lengths[:, None] - 1)
    summed = (logps * mask).sum(dim=1)
    return summed[: len(batch)], summed[len(batch) :]


def reference_logps(model, pairs, batch_size: int, pad_id: int) -> dict[str, tuple[float, float]]:
    """Reference log-probs once, before training, with the adapter disabled (as `train.reference_logps` caches)."""
    import torch

    from ..training.dpo import make_batches

    out = {}
    with torch.no_grad(), model.disable_adapter():
        for batch in make_batches(pairs, batch_size):
            chosen, rejected = batch_logps(model, batch, pad_id)
            out.update({p.id: (c, r) for p, c, r in zip(batch, chosen.tolist(), rejected.tolist())})
    return out


def train_dpo(model, pairs, reference: dict, config: TrainConfig, pad_id: int, seed: int = 0) -> list[float]:
    """One epoch of sigmoid DPO with Adam on the LoRA weights, batches and order as `train.train_dpo`; the losses."""
    import torch
    import torch.nn.functional as F

    from ..training.dpo import make_batches

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    batches = make_batches(pairs, config.batch_size)
    order = list(range(len(batches)))
    random.Random(derive_seed(seed, "epoch", 0)).shuffle(order)
    losses = []
    for index in order:
        batch = batches[index]
        chosen, rejected = batch_logps(model, batch, pad_id)
        ref_chosen, ref_rejected = (torch.tensor([reference[p.id][k] for p in batch]) for k in (0, 1))
        margin = (chosen - ref_chosen) - (rejected - ref_rejected)
        loss = -F.logsigmoid(config.beta * margin).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def dpo_tokens_per_second(model_path: str | Path, tokenized_pairs, config: TrainConfig, pad_id: int,
                          threads: int, model=None) -> dict:
    """Seconds of reference log-probs plus one epoch of LoRA DPO in PyTorch + PEFT (bench's `_train_seconds` twin).

    `model`: a PEFT model to train instead of a fresh LoRA on `model_path` (tests read its weights afterwards)."""
    import torch

    if config.loss != "sigmoid" or config.length_normalize:
        raise ValueError("the PyTorch twin implements plain sigmoid DPO only")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = model if model is not None else attach_peft_lora(torch_llama(model_path), config)
        started = time.perf_counter()
        reference = reference_logps(model, tokenized_pairs, config.batch_size, pad_id)
        train_dpo(model, tokenized_pairs, reference, config, pad_id)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    tokens = sum(len(p.chosen) + len(p.rejected) for p in tokenized_pairs)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds, "torch": torch.__version__,
            "threads": threads}
