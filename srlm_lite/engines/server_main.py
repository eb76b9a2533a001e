"""Runs an OpenAI-compatible server in this process the way srlm-lite needs it:
`python -m srlm_lite.engines.server_main llama-cpp-python|mlx-lm [the server's own arguments]`.

- llama-cpp-python: llama.cpp's extra (AMX) weight buffers off, as in-process (`llama_cpp._extra_buffers_off`: on
  the project's x86_64 machine a plain `python -m llama_cpp.server` segfaults on its first multi-token prompt),
  then `llama_cpp.server`'s own main;
- mlx-lm: the fast BLAS loaded before MLX (Linux; see `blas.py`), then `mlx_lm.server`'s own main.
Either exits when the process that started it is gone (a watchdog on the parent's pid), so a run killed with
SIGKILL leaves no server behind."""

from __future__ import annotations

import os
import sys
import threading
import time

LAUNCHABLE = ("llama-cpp-python", "mlx-lm")
PARENT_ENV = "SRLM_SERVER_PARENT"  # the pid whose end ends the server (set by local_server)


def watch_parent(parent: int, interval: float = 1.0) -> threading.Thread:
    """A daemon thread that ends this process once its parent `parent` has gone (the child is re-parented)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def run_llama_cpp_python(args: list[str]) -> None:
    from llama_cpp.server.__main__ import main

    from .llama_cpp import _extra_buffers_off, llama_has_amx

    if llama_has_amx() and os.environ.get("SRLM_LLAMA_EXTRA_BUFTS", "") != "1":
        _extra_buffers_off().__enter__()  # for the life of the process: every model the server loads
    sys.argv = ["llama_cpp.server", *args]
    main()


def run_mlx_lm(args: list[str]) -> None:
    from ..mlx_runtime import mx  # noqa: F401  (the fast BLAS first, then MLX)

    from mlx_lm.server import main

    sys.argv = ["mlx_lm.server", *args]
    main()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in LAUNCHABLE:
        raise SystemExit(f"usage: python -m srlm_lite.engines.server_main {'|'.join(LAUNCHABLE)} [server args]")
    watch_parent(int(os.environ.get(PARENT_ENV) or os.getppid()))
    runner = run_llama_cpp_python if argv[0] == "llama-cpp-python" else run_mlx_lm
    runner(argv[1:])


if __name__ == "__main__":
    main()
