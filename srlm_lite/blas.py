"""Load an optimised BLAS before MLX on Linux (mlx-cpu bundles reference BLAS, ~30x slower); `mlx_runtime` uses it."""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "SRLM_BLAS"
CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-openmp/libblas.so.3",
    "libopenblas.so.0",
)
INSTALL_HINT = (
    "MLX on Linux will use the reference BLAS bundled with mlx-cpu and run about 30x slower. "
    "Install an optimised BLAS: `apt-get install libopenblas0-pthread` "
    f"(or point {ENV_VAR} at a libblas.so / libopenblas.so)."
)


@dataclass(frozen=True)
class BlasInfo:
    loaded: bool
    path: str | None
    message: str


_INFO: BlasInfo | None = None
_HANDLES: list[ctypes.CDLL] = []


def _preloaded_blas() -> str | None:
    for entry in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        if "blas" in Path(entry).name.lower():
            return entry
    return None


def _candidates() -> list[str]:
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        return [override]
    return list(CANDIDATES)


def _try_load(path: str) -> bool:
    if path.startswith("/") and not Path(path).exists():
        return False
    try:
        _HANDLES.append(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    except OSError:
        return False
    return True


def _load_linux() -> BlasInfo:
    preloaded = _preloaded_blas()
    if preloaded:
        return BlasInfo(True, preloaded, f"BLAS preloaded via LD_PRELOAD: {preloaded}")
    if os.environ.get(ENV_VAR, "").strip().lower() == "none":
        return BlasInfo(False, None, f"{ENV_VAR}=none: optimised BLAS disabled. {INSTALL_HINT}")
    if "mlx.core" in sys.modules:
        return BlasInfo(
            False, None,
            "mlx.core was imported before srlm_lite.blas.ensure_fast_blas(): too late to load a fast BLAS, "
            "so MLX matmuls may run about 30x slower. Import srlm_lite modules before mlx, or set "
            "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3.",
        )
    for path in _candidates():
        if _try_load(path):
            return BlasInfo(True, path, f"Loaded optimised BLAS: {path}")
    return BlasInfo(False, None, f"No optimised BLAS found (tried {', '.join(_candidates())}). {INSTALL_HINT}")


def ensure_fast_blas() -> BlasInfo:
    """Load a fast BLAS into the global symbol scope once, before mlx.core; later calls return the first result."""
    global _INFO
    if _INFO is None:
        if sys.platform == "darwin":
            _INFO = BlasInfo(True, None, "macOS: MLX uses Accelerate / Metal; nothing to load.")
        elif sys.platform.startswith("linux"):
            _INFO = _load_linux()
        else:
            _INFO = BlasInfo(False, None, f"Unsupported platform {sys.platform}: no BLAS loaded.")
    return _INFO
