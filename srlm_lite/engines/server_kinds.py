"""The OpenAI-compatible servers srlm-lite knows, as a table: how each takes M_t's adapter, which log-prob
features it offers, and whether `--serve-local` can start it.

Handing M_t to a server (iteration t+1 samples with iteration t's adapter):
- llama-cpp-python (`python -m llama_cpp.server`) fixes its LoRA at start (`--lora_path`): `--serve-local` starts
  it with the adapter; a remote one is recognised by the model alias it was started with (`--model_alias`);
- mlx-lm (`mlx_lm.server`) takes an adapter folder per request (`adapters`), beside the model folder (`model`);
- llama-server (llama.cpp) loads GGUF LoRAs at start (`--lora FILE`, repeatable) and scales them per request
  (`lora: [{id, scale}]`, ids from its `/lora-adapters`);
- vllm serves LoRAs by name (`--enable-lora --lora-modules NAME=PEFT_DIR`, or loaded at run time through
  `/v1/load_lora_adapter`): the request's `model` is the name;
- other servers (Ollama, LM Studio, ...) cannot be handed an adapter: the base model only.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerKind:
    name: str
    help: str
    adapters: str  # "at-start" | "per-request" | "loaded-at-start" | "by-name" | "none"
    echo: bool  # the completions API echoes the prompt's per-token log-probs (`echo` + `logprobs`)
    top_logprobs: int  # the most alternatives per position the server returns
    logprobs_flag: bool  # logprobs asked as `logprobs: true, top_logprobs: N` (else the legacy `logprobs: N`)
    local: bool  # `--serve-local` can start it (srlm_lite.engines.server_main)
    # sampler settings sent with every request so that T and top-p are the only filters (the servers' own defaults
    # add top-k 40, min-p 0.05 or a repetition penalty); `other` servers get none (their names are not known)
    sampling: dict = field(default_factory=dict)


SERVER_KINDS: dict[str, ServerKind] = {
    "llama-cpp-python": ServerKind(
        "llama-cpp-python", "python -m llama_cpp.server (pip install 'srlm-lite[server]'); its LoRA is fixed at "
        "start, so --serve-local restarts it for each iteration's adapter", adapters="at-start", echo=True,
        top_logprobs=20, logprobs_flag=False, local=True,
        sampling={"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}),
    "mlx-lm": ServerKind(
        "mlx-lm", "mlx_lm.server on a model folder; the adapter is chosen per request", adapters="per-request",
        echo=False, top_logprobs=11, logprobs_flag=True, local=True, sampling={"top_k": 0, "min_p": 0.0}),
    "llama-server": ServerKind(
        "llama-server", "llama.cpp's llama-server; adapters loaded at start (--lora FILE), chosen per request",
        adapters="loaded-at-start", echo=False, top_logprobs=20, logprobs_flag=False, local=False,
        sampling={"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}),
    "vllm": ServerKind(
        "vllm", "vLLM; adapters served by name (--enable-lora --lora-modules NAME=DIR, PEFT layout)",
        adapters="by-name", echo=True, top_logprobs=20, logprobs_flag=False, local=False,
        sampling={"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0}),
    "other": ServerKind(
        "other", "any other OpenAI-compatible server (Ollama, LM Studio, ...): the base model only",
        adapters="none", echo=False, top_logprobs=5, logprobs_flag=False, local=False),
}
SERVERS = tuple(SERVER_KINDS)


def server_kind(name: str) -> ServerKind:
    if name not in SERVER_KINDS:
        raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    return SERVER_KINDS[name]


def logprob_fields(kind: ServerKind, wanted: int) -> dict:
    """The request fields that ask for `wanted` alternatives per position (capped at what the server allows)."""
    n = max(1, min(wanted, kind.top_logprobs))
    return {"logprobs": True, "top_logprobs": n} if kind.logprobs_flag else {"logprobs": n}


def help_text() -> str:
    return "; ".join(f"{k.name}: {k.help}" for k in SERVER_KINDS.values())
