"""The one checkpoint layout of the project's models: DIR/model.safetensors + DIR/config.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"   # the shipped tiny models


def weights_path(name: str, root=None) -> Path:
    """Directory of a trained model: `name` itself when it is a directory, else ROOT/name, ROOT defaulting to
    the shipped m4v/weights/."""
    if Path(name).is_dir():
        return Path(name)
    path = Path(root or WEIGHTS_DIR) / name
    if not path.is_dir():
        raise FileNotFoundError(f"no trained weights for {name!r} at {path}; "
                                f"train them with `m4v-bench train --model {name} --out {path}`")
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
    """-> (config, state dict) of a save_weights directory; a clear error naming what is missing."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: missing (expected a saved model directory)")
    return json.loads((directory / CONFIG_NAME).read_text()), load_file(str(directory / WEIGHTS_NAME), device=device)
