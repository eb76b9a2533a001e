"""The server engine: sampling and judging through an OpenAI-compatible completions API (vLLM, llama.cpp's
llama-server, `python -m llama_cpp.server`, `mlx_lm.server`, Ollama, ...), concurrent and retried.

Prompts are templated here with the base model's own tokenizer and chat template (the GGUF's, as the trainer uses),
and sent as raw text to `/completions`, so every server samples exactly the text the in-process engine would.
`--serve-local` starts the server itself (see `local_server`); `handoff` makes it answer as M_t."""

from __future__ import annotations

import logging
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from ..models.loading import tokenizer_for
from .base import Completion
from .handoff import model_alias, model_fields
from .local_server import LocalServer, launcher, llama_cpp_python_args, mlx_lm_args
from .openai_http import HttpClient, ServerError, api_key
from .openai_parse import LogprobsUnavailable, candidate_logprobs, completion_fields, echoed_logprobs, \
    top_alternatives
from .server_kinds import ServerKind, logprob_fields, server_kind
from .serving import cache_dir, served_model

log = logging.getLogger(__name__)

__all__ = ["LogprobsUnavailable", "OpenAIEngine", "ServerError"]


class OpenAIEngine:
    """Implements the Engine protocol over HTTP; `concurrency` requests in flight at most."""

    def __init__(self, model, options, *, local: LocalServer | None = None):
        """`local`: a server already started for this engine, which it then owns (restarts, stops)."""
        self.model = model
        self.options = options
        self.kind: ServerKind = server_kind(options.server)
        self.concurrency = max(1, int(options.concurrency))
        api_key(options.api_key_env)  # fails early, naming the variable, when it is not set
        self.tokenizer = tokenizer_for(model)  # the sampler's and the trainer's template and vocabulary
        self.local = local
        if self.local is None and options.serve_local:
            self.local = start_local_server(self.kind, model, options)
        elif self.local is None and not options.base_url:
            raise ValueError("--backend openai needs --base-url URL (the server's OpenAI base, e.g. "
                             "http://host:8000/v1) or --serve-local")
        self.client = HttpClient(self.local.base_url if self.local else options.base_url,
                                 api_key_env=options.api_key_env, timeout=options.request_timeout,
                                 max_retries=options.max_retries, on_retry=self._retrying,
                                 before_retry=self._restart_if_dead)
        try:
            served = str(self.local_folder) if self.local and self.kind.name == "mlx-lm" else options.served_model
            self.fields = model_fields(self.kind, self.client, model, served)
        except BaseException:
            self.close()
            raise
        self.model_id = f"{self.kind.name}@{self.client.base_url}:{model_alias(model)}"

    @classmethod
    def open(cls, model, options) -> "OpenAIEngine":
        """The engine registry's constructor: `model` a ModelSpec, `options` an EngineOptions."""
        return cls(model, options)

    # ------------------------------------------------------------------ lifecycle

    @property
    def local_folder(self) -> Path | None:
        return self.local.model_folder if self.local else None

    def _retrying(self, reason: str, attempt: int, delay: float) -> None:
        log.warning("%s: %s; retry %d in %.1fs", self.client.base_url, reason, attempt, delay)

    def _restart_if_dead(self) -> None:
        if self.local is not None and self.local.restart_if_dead():
            log.warning("the local %s server had exited: restarted on %s", self.kind.name, self.local.base_url)
            self.client.base_url = self.local.base_url

    def close(self) -> None:
        """Stop the server this engine started (none for a remote one)."""
        local = getattr(self, "local", None)
        if local is not None:
            local.stop()

    def __del__(self):
        self.close()

    # ------------------------------------------------------------------ text and tokens

    def chat_prompt(self, user: str) -> str:
        return self.tokenizer.prompt_text(user)

    def render_chat(self, messages: list[dict]) -> str:
        return self.tokenizer.render(messages, add_generation_prompt=True)

    @property
    def context_length(self) -> int:
        return self.options.n_ctx

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, special=False, add_bos=False)

    # ------------------------------------------------------------------ sampling

    def _body(self, prompt: str, **settings) -> dict:
        return {**self.fields, "prompt": prompt, "stream": False, **settings}

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, top_p: float, seed: int,
                 stop: Sequence[str] = ()) -> Completion:
        body = self._body(prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                          **self.kind.sampling, **({"stop": list(stop)} if stop else {}))
        text, n_tokens, finish = completion_fields(self.client.post("/completions", body))
        return Completion(text=text, n_tokens=n_tokens if n_tokens is not None else len(self.encode_text(text)),
                          finish_reason=finish)

    def complete_n(self, prompt: str, *, seeds: Sequence[int], max_tokens: int, temperature: float, top_p: float,
                   stop: Sequence[str] = ()) -> list[Completion]:
        return self.complete_many([(prompt, seeds)], max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                  stop=stop)[0]

    def complete_many(self, requests: Sequence[tuple[str, Sequence[int]]], *, max_tokens: int, temperature: float,
                      top_p: float, stop: Sequence[str] = ()) -> list[list[Completion]]:
        """One request per (prompt, seed), `concurrency` in flight; answers in the order asked."""
        jobs = [(r, prompt, seed) for r, (prompt, seeds) in enumerate(requests) for seed in seeds]

        def one(job):
            return self.complete(job[1], max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=job[2],
                                 stop=stop)

        out: list[list[Completion]] = [[] for _ in requests]
        for (r, _, _), completion in zip(jobs, self.map(one, jobs)):
            out[r].append(completion)
        return out

    def map(self, fn, items: Sequence) -> list:
        """`fn` over `items`, `concurrency` at a time, results in order (the first failure is raised)."""
        if self.concurrency == 1 or len(items) < 2:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # ------------------------------------------------------------------ scoring

    def next_token_logprobs(self, prompt: str, candidates: Sequence[str]) -> dict[str, float]:
        """From the completions API's top log-probs of one generated token; a candidate the server did not list
        gets -inf (its probability is below every listed one's)."""
        ids = {c: self._single_token(c) for c in candidates}
        body = self._body(prompt, max_tokens=1, temperature=0.0, **logprob_fields(self.kind, self.kind.top_logprobs))
        answer = self.client.post("/completions", body)
        try:
            return candidate_logprobs(top_alternatives(answer), ids)
        except LogprobsUnavailable as missing:
            raise LogprobsUnavailable(f"{self.kind.name} at {self.client.base_url}: {missing}") from None

    def continuation_logprobs(self, prompt: str, continuation: str) -> list[float]:
        """log p of each token of `continuation` after `prompt`, from the completions API's `echo` + `logprobs`."""
        if not self.kind.echo:
            raise NotImplementedError(
                f"{self.kind.name} servers do not echo the prompt's log-probabilities (the completions API's `echo` "
                "with `logprobs`), so continuation log-probs cannot be read through them; use the in-process "
                "engine (--backend llama-cpp) or a server that does (llama-cpp-python, vllm)")
        if not continuation:
            return []
        body = self._body(prompt + continuation, max_tokens=1, temperature=0.0, echo=True,
                          **logprob_fields(self.kind, 1))
        answer = self.client.post("/completions", body)
        return echoed_logprobs(answer, continuation, len(self.encode_text(continuation)))

    def _single_token(self, text: str) -> int:
        ids = self.encode_text(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens in this vocabulary; a score candidate must be one")
        return ids[0]


def start_local_server(kind: ServerKind, model, options) -> LocalServer:
    """`--serve-local`: the server of `kind` started with M_t (llama-cpp-python: the served GGUF + its LoRA;
    mlx-lm: the base model's folder, or a Hugging Face-layout folder converted from its GGUF; adapters per
    request)."""
    if not kind.local:
        raise ValueError(f"--serve-local starts llama-cpp-python or mlx-lm servers, not {kind.name}: start it "
                         "yourself and give --base-url")
    log_path = Path(options.server_log) if options.server_log else cache_dir() / "servers" / f"{kind.name}.log"
    if kind.name == "llama-cpp-python":
        args = llama_cpp_python_args(served_model(model.base, options.serve), model.lora_gguf, model_alias(model),
                                     options)
        return LocalServer(kind.name, launcher(kind.name) + args, log_path, api_key_env=options.api_key_env).start()
    folder = Path(model.base) if Path(model.base).is_dir() else hf_model_folder(model.base)
    return LocalServer(kind.name, launcher(kind.name) + mlx_lm_args(folder), log_path,
                       api_key_env=options.api_key_env, model_folder=folder, ready_path="/health").start()


def hf_model_folder(gguf: Path) -> Path:
    """A Hugging Face-layout folder of the GGUF `gguf` (what mlx_lm.server loads), converted once and cached. Off
    Apple Silicon its weights are float32: MLX multiplies float16 on a CPU without BLAS, several times slower."""
    from ..models.hf_export import gguf_to_hf_folder
    from ..records import file_sha256

    float32 = not (sys.platform == "darwin" and platform.machine() == "arm64")
    target = cache_dir() / "hf" / f"{Path(gguf).stem}.{file_sha256(gguf)[:16]}{'.f32' if float32 else ''}"
    if not (target / "config.json").exists():
        partial = target.with_name(target.name + ".partial")
        gguf_to_hf_folder(gguf, partial)
        if float32:
            _as_float32(Path(gguf), partial)
        partial.rename(target)
    return target


def _as_float32(gguf: Path, folder: Path) -> None:
    """Rewrite a converted folder's weights as float32, straight from the GGUF (no float16 rounding)."""
    import json

    from ..mlx_runtime import mx
    from ..models.gguf import inspect_gguf
    from ..models.hf_export import hf_weights

    mx.save_safetensors(str(folder / "model.safetensors"),
                        {k: mx.array(v.astype("float32")) for k, v in hf_weights(inspect_gguf(gguf)).items()})
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}, indent=2) + "\n")
