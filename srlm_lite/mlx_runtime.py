"""MLX, imported the one right way: the fast BLAS is arranged first (see `blas`), then mlx.core, nn, optimizers.

Every module that uses MLX imports it from here (`from srlm_lite.mlx_runtime import mx, nn, optim`), so import
order never decides whether training runs on OpenBLAS or on the ~30x slower reference BLAS of mlx-cpu."""

from __future__ import annotations

import time

from .blas import ensure_fast_blas

BLAS = ensure_fast_blas()

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import mlx.optimizers as optim  # noqa: E402
from mlx.utils import tree_flatten, tree_unflatten  # noqa: E402

__all__ = ["BLAS", "matmul_gflops", "mx", "nn", "optim", "tree_flatten", "tree_unflatten"]


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured float32 MLX matmul speed in GFLOP/s (best of `repeats`)."""
    a = mx.random.normal((n, n), dtype=mx.float32)
    b = mx.random.normal((n, n), dtype=mx.float32)
    mx.eval(a @ b)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        mx.eval(a @ b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9
