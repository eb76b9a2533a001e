"""Handing M_t (the base model plus iteration t's adapter) to an OpenAI-compatible server: the request fields that
select it, or, where the server does not hold it, a clear message saying which file to load and how."""

from __future__ import annotations

from pathlib import Path

from ..errors import AdapterNotServed
from ..records import file_sha256
from .openai_http import HttpClient, ServerError
from .server_kinds import ServerKind
from .serving import cache_dir


__all__ = ["AdapterNotServed", "model_alias", "model_fields"]


def model_alias(model) -> str:
    """The name M_t goes by on a server: srlm-base, or srlm-<first 12 hex of the GGUF adapter's sha256>."""
    if model.adapter is None:
        return "srlm-base"
    return f"srlm-{file_sha256(model.lora_gguf)[:12]}"


def served_ids(client: HttpClient) -> list[str]:
    """The model ids the server lists (GET /models)."""
    return [entry.get("id", "") for entry in client.get("/models").get("data", [])]


def default_model(client: HttpClient, served_model: str) -> str:
    """`--served-model`, else the first model the server lists."""
    if served_model:
        return served_model
    ids = served_ids(client)
    if not ids:
        raise ServerError(f"{client.base_url} lists no model (GET /models); name one with --served-model")
    return ids[0]


def hf_adapter_dir(model, layout: str) -> Path:
    """M_t's adapter re-ordered for a Hugging Face-layout base, made on first use and cached by its sha256:
    `mlx` = mlx-lm's files (`models.export.export_mlx_adapter`), `peft` = PEFT's (`training.export_peft`)."""
    from ..training.lora import ADAPTER_WEIGHTS

    source = model.adapter_dir
    target = cache_dir() / "adapters" / f"{file_sha256(source / ADAPTER_WEIGHTS)[:16]}.{layout}"
    if not target.exists():
        partial = target.with_name(target.name + ".partial")
        if layout == "mlx":
            from ..models.export import export_mlx_adapter

            export_mlx_adapter(model, partial, with_base=False)
        else:
            from ..training.export_peft import export_peft

            export_peft(source, model.base, partial)
        partial.rename(target)
    return target


def model_fields(kind: ServerKind, client: HttpClient, model, served_model: str = "") -> dict:
    """The request fields that make the server answer as M_t; AdapterNotServed when it cannot."""
    if kind.adapters == "per-request":
        return _per_request(client, model, served_model)
    if model.adapter is None:
        if kind.adapters == "loaded-at-start":
            return {"lora": [{"id": a["id"], "scale": 0.0} for a in _loaded_loras(client)]}
        return {"model": model_alias(model) if kind.adapters == "at-start" else default_model(client, served_model)}
    handlers = {"at-start": _fixed_at_start, "per-request": _per_request, "loaded-at-start": _loaded_at_start,
                "by-name": _by_name, "none": _no_adapters}
    return handlers[kind.adapters](client, model, served_model)


def _fixed_at_start(client: HttpClient, model, served_model: str) -> dict:
    """llama-cpp-python: a server started with M_t's adapter lists the alias it was started with."""
    alias = model_alias(model)
    if alias not in served_ids(client):
        raise AdapterNotServed(
            f"{client.base_url} does not serve {model.label or 'M_t'}: python -m llama_cpp.server fixes its LoRA at "
            f"start. Restart it with this iteration's adapter:\n  python -m llama_cpp.server --model {model.base} "
            f"--lora_path {model.lora_gguf} --model_alias {alias}\nthen continue with `srlm-lite iterate --out RUN "
            "--resume` (or let srlm-lite start and restart it: --serve-local).")
    return {"model": alias}


def _per_request(client: HttpClient, model, served_model: str) -> dict:
    """mlx_lm.server: the model folder in every request (its default model ignores a request's adapter), and M_t's
    adapter folder (Hugging Face order) beside it."""
    if not served_model:
        raise AdapterNotServed("mlx_lm.server is told per request which model folder to use (and the adapter on "
                               "it): name the folder as the server sees it with --served-model PATH (or use "
                               "--serve-local)")
    if model.adapter is None:
        return {"model": served_model}
    return {"model": served_model, "adapters": str(hf_adapter_dir(model, "mlx"))}


def _loaded_loras(client: HttpClient) -> list[dict]:
    answer = client.get("/lora-adapters", root=True)
    return answer if isinstance(answer, list) else answer.get("data", [])


def _loaded_at_start(client: HttpClient, model, served_model: str) -> dict:
    """llama-server: every adapter it loaded at start is listed with an id; M_t's gets scale 1, the others 0."""
    loaded = _loaded_loras(client)
    wanted = Path(model.lora_gguf).resolve()
    ids = [a["id"] for a in loaded if Path(a.get("path", "")).resolve() == wanted]
    if not ids:
        raise AdapterNotServed(
            f"llama-server at {client.root} has not loaded {wanted}. It loads GGUF LoRAs at start: restart it with "
            f"`llama-server -m {model.base} --lora {wanted}` (repeat --lora for each iteration's adapter.gguf; "
            "srlm-lite chooses one per request), then resume the run with --resume.")
    return {"lora": [{"id": a["id"], "scale": 1.0 if a["id"] == ids[0] else 0.0} for a in loaded]}


def _by_name(client: HttpClient, model, served_model: str) -> dict:
    """vLLM: the adapter is served under M_t's alias; loaded at run time where the server allows it."""
    alias = model_alias(model)
    if alias in served_ids(client):
        return {"model": alias}
    peft = hf_adapter_dir(model, "peft")
    try:
        client.post("/load_lora_adapter", {"lora_name": alias, "lora_path": str(peft)})
        return {"model": alias}
    except ServerError as refused:
        raise AdapterNotServed(
            f"vLLM at {client.base_url} does not serve {alias} and would not load it ({refused}). Copy the PEFT "
            f"adapter {peft} to the server and start it with `vllm serve BASE --enable-lora --lora-modules "
            f"{alias}=DIR` (or set VLLM_ALLOW_RUNTIME_LORA_UPDATING=True there), then resume with --resume.") \
            from None


def _no_adapters(client: HttpClient, model, served_model: str) -> dict:
    raise AdapterNotServed(
        f"{client.base_url} cannot be handed an adapter, and this iteration samples with {model.label or 'M_t'}. "
        f"Serve it yourself: the GGUF LoRA {model.lora_gguf} (llama.cpp: --lora FILE; Ollama: an ADAPTER line in a "
        f"Modelfile), or its PEFT export (`vllm --lora-modules`); or choose --server llama-cpp-python/mlx-lm/"
        "llama-server/vllm, or --serve-local.")
