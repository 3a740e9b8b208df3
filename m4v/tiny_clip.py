"""A tiny CLIP for the synthetic world: an open_clip architecture registered as "m4v-tiny-clip", plus CLIP score.

The architecture is an ordinary open_clip config (ResNet image tower, causal text transformer on the bundled BPE
tokenizer), so trained weights load with `open_clip.create_model_and_transforms(TINY_CLIP_NAME, pretrained=PATH)`
once `register_tiny_clip()` has run, or with no registration as `local-dir:DIR` (DIR holds the weights and
open_clip_config.json, as written by `save_tiny_clip`).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

TINY_CLIP_NAME = "m4v-tiny-clip"
WEIGHTS_FILE, CONFIG_FILE = "open_clip_model.safetensors", "open_clip_config.json"
# Image tower: open_clip's ModifiedResNet (a list of `layers` selects it), one bottleneck per stage, 64 px -> 2x2
# grid -> attention pooling. A ViT (patch 8, width 128, 4 layers) learnt colour as fast but stayed at chance on
# shape after 300 steps; the conv tower tells shapes apart within 200. Captions are at most 12 BPE tokens with
# start/end, so 16 positions suffice. The 49408 x 64 token embedding is most of the parameters; stored in float16
# the whole file is ~9.4 MB (image tower 1.3 M, text tower 3.4 M parameters).
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 4},
}
# open_clip's defaults (OpenAI CLIP mean / std), written out so a local-dir load needs nothing else.
PREPROCESS_CFG = {"size": [64, 64], "mode": "RGB", "mean": [0.48145466, 0.4578275, 0.40821073],
                  "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic", "resize_mode": "shortest"}

_registered_dir: Path | None = None


def register_tiny_clip() -> str:
    """Make TINY_CLIP_NAME a known open_clip architecture (idempotent); returns the name."""
    global _registered_dir
    import open_clip

    if TINY_CLIP_NAME not in open_clip.list_models():
        # add_model_config scans JSON files by stem; a private temp dir works for any install (no package data).
        # open_clip rescans its config paths whenever anyone adds one, so the file lives as long as the process
        # and is removed at exit (every process used to leave a directory behind in the temp dir).
        _registered_dir = Path(tempfile.mkdtemp(prefix="m4v-tiny-clip-"))
        atexit.register(shutil.rmtree, _registered_dir, ignore_errors=True)
        (_registered_dir / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(_registered_dir / f"{TINY_CLIP_NAME}.json")
    return TINY_CLIP_NAME


def build_tiny_clip(seed: int = 0):
    """A freshly initialised tiny CLIP (torch.nn.Module, open_clip's CLIP class)."""
    import open_clip

    register_tiny_clip()
    torch.manual_seed(seed)
    return open_clip.create_model(TINY_CLIP_NAME)


def save_tiny_clip(model: torch.nn.Module, out, dtype: torch.dtype = torch.float16) -> Path:
    """Write OUT/open_clip_model.safetensors (in `dtype`) and OUT/open_clip_config.json; returns the weights."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()   # BN counters stay int
             for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": PREPROCESS_CFG},
                                              indent=2))
    return out / WEIGHTS_FILE


def load_tiny_clip(path, device: str = "cpu"):
    """(model, preprocess, tokenizer) from a weights file or the directory holding it; model in eval mode."""
    import open_clip

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no tiny CLIP weights at {path}; train them with "
                                f"`m4v-bench train --model clip-tiny --out DIR`")
    register_tiny_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP_NAME, pretrained=str(path), device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(TINY_CLIP_NAME)


def normalize_images(model, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> the model's input: resized to its image size, CLIP-normalised (differentiable)."""
    size = model.visual.image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    x = (images.float() + 1) / 2                                                  # (B, 3, H, W) in [0, 1]
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(model.visual.image_mean, device=x.device)[:, None, None]
    std = torch.tensor(model.visual.image_std, device=x.device)[:, None, None]
    return (x - mean) / std


def clip_score(model, tokenizer, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Per-image CLIP score 100 * max(cos(image, prompt), 0) as torchmetrics computes it; (B,), differentiable
    with respect to `images` ((B, 3, H, W) in [-1, 1])."""
    device = next(model.parameters()).device
    image_features = model.encode_image(normalize_images(model, images).to(device), normalize=True)   # (B, E)
    text_features = model.encode_text(tokenizer(prompts).to(device), normalize=True)                  # (B, E)
    return 100 * (image_features * text_features).sum(-1).clamp(min=0)
