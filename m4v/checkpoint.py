"""The one checkpoint layout of the project's models: DIR/model.safetensors + DIR/config.json."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"   # the shipped tiny models


def weights_path(name: str, root=None) -> Path:
    """Directory of a trained model: `name` itself when it is a directory, else ROOT/name, ROOT defaulting to
    the shipped m4v/weights/."""
    if Path(name).is_dir():
        return Path(name)
    path = Path(root or WEIGHTS_DIR) / name
    if not path.is_dir():
        from m4v.recipes import RECIPES  # the names `train --model` takes: only those can be trained into place

        if name in RECIPES:
            raise FileNotFoundError(f"no trained weights for {name!r} at {path}; "
                                    f"train them with `m4v-bench train --model {name} --out {path}`")
        raise FileNotFoundError(f"no model directory {name!r} (expected a directory holding config.json and "
                                f"model.safetensors, or a shipped name: {', '.join(RECIPES)})")
    return path


def save_weights(module: torch.nn.Module, config: dict, directory) -> Path:
    """Write the module's state dict (safetensors) and its config (JSON)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME))
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def load_weights(directory, device: str = "cpu") -> tuple[dict, dict]:
    """-> (config, state dict) of a save_weights directory; a missing, truncated or corrupt file is a one-line
    error naming it."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: missing (expected a saved model directory)")
    config = read_config(directory / CONFIG_NAME)
    try:
        state = load_file(str(directory / WEIGHTS_NAME), device=device)
    except (SafetensorError, OSError, ValueError) as exc:  # truncated, not safetensors, bad header
        raise ValueError(f"{directory / WEIGHTS_NAME}: not a readable safetensors file "
                         f"({' '.join(str(exc).split())})") from exc
    for name, tensor in state.items():   # a diverged checkpoint must never generate (and score) black videos
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{directory / WEIGHTS_NAME}: tensor {name!r} holds non-finite values (NaN or inf): "
                             "a diverged or corrupted checkpoint")
    return config, state


def read_config(path) -> dict:
    """A config.json as a dict; anything else is a one-line error naming the file."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON config ({' '.join(str(exc).split())})") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
    bad = _non_finite(config)
    if bad:   # JSON's NaN / Infinity / 1e400 literals load as floats that no model can run with
        raise ValueError(f"{path}: key {bad!r} is not a finite number")
    return config


def _non_finite(value, key: str = "") -> str | None:
    """The dotted key of the first non-finite number in a JSON value, or None."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return key or "(top level)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return None


@contextmanager
def explain_load_errors(directory):
    """Around building a model from its saved directory: a state dict of another architecture (torch's
    multi-line RuntimeError) or a config the class refuses becomes one line naming the directory's files."""
    directory = Path(directory)
    try:
        yield
    except RuntimeError as exc:
        text = str(exc)
        if "Error(s) in loading state_dict" not in text:
            raise
        keys = {label: next((line.count('"') // 2 for line in text.splitlines() if label in line), 0)
                for label in ("Missing key(s)", "Unexpected key(s)")}
        raise ValueError(f"{directory / WEIGHTS_NAME}: weights do not fit the architecture in "
                         f"{directory / CONFIG_NAME} ({keys['Missing key(s)']} missing, {keys['Unexpected key(s)']} "
                         f"unexpected, {text.count('size mismatch')} wrong-shape tensors)") from exc
    except ValueError as exc:  # the config class's own check (unknown keys, inconsistent sizes)
        if str(directory) in str(exc):
            raise
        raise ValueError(f"{directory / CONFIG_NAME}: {' '.join(str(exc).split())}") from exc
    except SafetensorError as exc:  # a library's own loading (transformers) met a truncated file
        raise ValueError(f"{directory}: holds an unreadable safetensors file ({' '.join(str(exc).split())})") \
            from exc
    except (TypeError, KeyError, ZeroDivisionError) as exc:  # config keys / values the model class cannot take
        raise ValueError(f"{directory / CONFIG_NAME}: not a config of this model ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())})") from exc
