"""What `--model` names: a GGUF file, a model folder, or a Hugging Face repository in the local cache (never
downloaded: srlm-lite runs offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .gguf import UnsupportedModelError, embedded_model_path, inspect_gguf, is_gguf

_REPO_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
FOLDER_FILES = ("config.json",)


def resolve(model: str | Path | None) -> Path:
    """The model file or folder `model` names (empty: the embedded model); a clear error when there is none."""
    if not model:
        return embedded_model_path()
    path = Path(model).expanduser()
    if path.exists():
        return path
    if _REPO_NAME.match(str(model)):
        return hub_snapshot(str(model))
    raise FileNotFoundError(f"Model not found: {model} is neither a file, a folder, nor a Hugging Face repository "
                            f"name (org/name)")


def hub_snapshot(repo: str) -> Path:
    """The folder of `repo` in huggingface_hub's local cache; offline, so a missing one is an error saying how to
    get it."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with mlx-lm
        raise FileNotFoundError(f"{repo}: huggingface_hub is not installed ({exc})") from exc
    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError) as exc:
        raise FileNotFoundError(
            f"{repo} is not in the local Hugging Face cache and srlm-lite never downloads: on a connected machine run "
            f"`huggingface-cli download {repo}` (or `hf download {repo}`) and copy ~/.cache/huggingface/hub here, or "
            f"pass a local GGUF file or model folder") from exc


def is_folder_model(path: Path) -> bool:
    return path.is_dir()


def check_model(path: Path) -> str:
    """Fail early, with one clear line, on a model srlm-lite cannot run; its architecture otherwise."""
    if path.is_dir():
        return check_folder(path)
    if not is_gguf(path) and path.suffix != ".gguf":
        raise UnsupportedModelError(f"{path}: not a GGUF file; give a .gguf model, a model folder (config.json + "
                                    f"*.safetensors + tokenizer files) or a Hugging Face repository name")
    return inspect_gguf(path).architecture


def check_folder(path: Path) -> str:
    """A model folder mlx-lm can load: config.json naming a model type mlx-lm has, weights, a tokenizer."""
    import importlib

    missing = [name for name in FOLDER_FILES if not (path / name).is_file()]
    if not any(path.glob("*.safetensors")):
        missing.append("*.safetensors")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        missing.append("tokenizer.json (or tokenizer.model)")
    if missing:
        raise UnsupportedModelError(f"{path}: a model folder needs {', '.join(missing)}")
    model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    try:
        importlib.import_module(f"mlx_lm.models.{model_type.replace('-', '_')}")
    except ImportError as exc:
        raise UnsupportedModelError(f"{path}: model_type '{model_type}' is not one mlx-lm can load") from exc
    return model_type
