"""`--serve-local`: an OpenAI-compatible server started on 127.0.0.1 by srlm-lite itself, with M_t's model and
adapter, on a free port, its own log in a file; ready once it answers; stopped by its owner, and started again
when it died (the engine's retries call `restart_if_dead`)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .openai_http import HttpClient, ServerError, Transient
from .server_main import PARENT_ENV

HOST = "127.0.0.1"
# variables a server would read as its own settings (llama_cpp.server: HOST and PORT override its flags)
SERVER_ENV_SETTINGS = ("HOST", "PORT", "CONFIG_FILE", "MODEL", "API_KEY")
LOG_TAIL = 2000  # characters of the server's log quoted when it fails to start


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def launcher(kind: str) -> list[str]:
    return [sys.executable, "-m", "srlm_lite.engines.server_main", kind]


def llama_cpp_python_args(model_path: Path, lora_path: Path | None, alias: str, options) -> list[str]:
    """`python -m llama_cpp.server` flags for `model_path` (+ LoRA) with the engine options' context and threads."""
    threads = str(options.n_threads or os.cpu_count() or 1)
    args = ["--model", str(model_path), "--model_alias", alias, "--n_ctx", str(options.n_ctx),
            "--n_batch", str(options.n_batch), "--n_ubatch", str(options.n_batch), "--n_threads", threads,
            "--n_threads_batch", threads, "--flash_attn", str(options.flash_attn).lower(), "--logits_all", "true",
            "--verbose", "false"]
    return args + (["--lora_path", str(lora_path)] if lora_path else [])


def mlx_lm_args(model_folder: Path) -> list[str]:
    return ["--model", str(model_folder), "--log-level", "INFO"]


def server_env(kind: str, api_key_env: str = "") -> dict[str, str]:
    """The server's environment: ours without the variables it would take as settings; with a key, the key in
    the variable llama_cpp.server reads (API_KEY: passed in the environment, never on the command line)."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_SETTINGS}
    env[PARENT_ENV] = str(os.getpid())
    if api_key_env and kind == "llama-cpp-python" and os.environ.get(api_key_env):
        env["API_KEY"] = os.environ[api_key_env]
    return env


@dataclass
class LocalServer:
    """One server process run as `command + --host 127.0.0.1 --port P` (e.g. `launcher(kind) + its flags`),
    logging to `log_path`; `kind` decides how an API key is handed to it (see `server_env`)."""

    kind: str
    command: list[str]
    log_path: Path
    api_key_env: str = ""
    ready_timeout: float = 600.0
    model_folder: Path | None = None  # mlx-lm: the model folder it serves (requests name it)
    ready_path: str = "/v1/models"  # answers 200 once the server is up (mlx_lm.server: /health)
    port: int = 0
    process: subprocess.Popen | None = None
    starts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "LocalServer":
        """Start (on `port`, else a free port, kept for restarts) and wait until it answers; RuntimeError (with its
        log's tail) when it cannot. The log starts with the command line (an API key is only in the environment)."""
        self.port = self.port or free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self.command + ["--host", HOST, "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== srlm-lite: starting {self.kind} on {HOST}:{self.port}: {shlex.join(command)} ===\n"
                      .encode())
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=server_env(self.kind, self.api_key_env))
        self.starts += 1
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        client = HttpClient(self.base_url, api_key_env=self.api_key_env, timeout=5.0)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the {self.kind} server exited with code {self.process.returncode} while "
                                   f"starting; its log ({self.log_path}) ends:\n{self.log_tail()}")
            try:
                client.once("GET", f"http://{HOST}:{self.port}{self.ready_path}")
                return
            except (Transient, ServerError):
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the {self.kind} server did not answer within {self.ready_timeout:.0f}s; its log "
                           f"({self.log_path}) ends:\n{self.log_tail()}")

    def restart_if_dead(self) -> bool:
        """Start the server again when its process has ended (True then); a no-op while it runs."""
        with self._lock:
            if self.process is None or self.alive():
                return False
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== srlm-lite: the server exited (code {self.process.returncode}); "
                          "restarting ===\n".encode())
            self.start()
            return True

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after `grace` seconds); safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return ""

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
