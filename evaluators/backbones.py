"""Feature backbones loaded from local paths only (no hub): open_clip CLIP models.

A backbone spec on the command line is `KIND=MODEL_NAME:WEIGHTS_PATH` with a local checkpoint file:
  clip=ViT-B-32:/models/vit_b_32.safetensors        an open_clip architecture (add more with add_model_config)
  clip=m4v-tiny-clip:m4v/weights/clip-tiny/open_clip_model.safetensors   the CLIP trained on the world
  dino=vit_base_patch16_224.dino:/models/dino.pth   a timm ViT whose CLS feature VBench's subject
                                                    consistency uses (DINO ViT-B/16)
  aesthetic=linear:/models/sa_0_4_vit_l_14_linear.pth  LAION's aesthetic head on the CLIP embedding
  fidelity=fidelity-tiny:m4v/weights/reward-tiny/model.safetensors  the world-trained image-quality model
  umt=vit_large_patch16_224:/models/l16_ptk710_ftk710_ftk400_f16_res224.pth  VBench's human_action classifier
                                                    (UMT ViT-L/16, Kinetics-400 label list in the same folder)
Without --backbone, `m4v-bench eval` uses the shipped world-trained models (default_backbones()).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BACKBONE_KINDS = ("clip", "dino", "aesthetic", "fidelity", "umt")
BACKBONE_USAGE = {"clip": "clip=OPEN_CLIP_MODEL:PATH", "dino": "dino=vit_base_patch16_224.dino:PATH",
                  "aesthetic": "aesthetic=linear:PATH (with clip=...)", "fidelity": "fidelity=fidelity-tiny:PATH",
                  "umt": "umt=vit_large_patch16_224:PATH"}
# VBench's clip_transform and dino_transform constants (vbench/utils.py).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class BackboneSpec:
    kind: str
    model: str
    weights: str | None

    @property
    def label(self) -> str:
        """What a result row records as its backbone."""
        return f"{self.kind}:{self.model}" + (f"@{Path(self.weights).name}" if self.weights else "@random-init")


def parse_backbone(spec: str) -> BackboneSpec:
    """'clip=ViT-B-32:/path/w.safetensors' -> BackboneSpec; the path must exist."""
    kind, sep, rest = spec.partition("=")
    model, _, weights = rest.partition(":")
    if not sep or kind not in BACKBONE_KINDS or not model or not weights:
        raise ValueError(f"--backbone {spec!r}: expected KIND=MODEL:PATH with KIND in {BACKBONE_KINDS}")
    if not Path(weights).is_file():
        raise FileNotFoundError(f"--backbone {spec!r}: {weights} does not exist (weights load from local files only)")
    return BackboneSpec(kind, model, weights)


def load_state_file(path) -> dict:
    """A state dict from a local weights file: safetensors, or a torch file loaded with weights_only=True (never
    without); a file that needs more is a one-line error naming it."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors surface as several types
        raise ValueError(f"{path} does not load with weights_only=True ({type(exc).__name__}); save its state_dict "
                         "alone, or as safetensors") from exc


def default_backbones() -> list[str]:
    """Offline defaults: the tiny CLIP and fidelity models shipped in m4v/weights/ (those present)."""
    from m4v.checkpoint import WEIGHTS_DIR

    shipped = {"clip": ("m4v-tiny-clip", WEIGHTS_DIR / "clip-tiny" / "open_clip_model.safetensors"),
               "fidelity": ("fidelity-tiny", WEIGHTS_DIR / "reward-tiny" / "model.safetensors")}
    return [f"{kind}={model}:{path}" for kind, (model, path) in shipped.items() if path.is_file()]


def clip_preprocess(frames: np.ndarray, size: int) -> torch.Tensor:
    """VBench clip_transform on a batch: shorter side -> size (bicubic, antialias off), center crop, normalise."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()      # (T, 3, H, W)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top:top + size, left:left + size] / 255.0
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (x - mean) / std


class ClipBackbone:
    """An open_clip model: L2-normalised image and text embeddings, frames encoded in batches."""

    def __init__(self, spec: BackboneSpec, device: str = "cpu", batch_size: int = 64):
        import open_clip

        self.spec, self.device, self.batch_size = spec, device, batch_size
        if spec.model == "m4v-tiny-clip":   # the world-trained CLIP (m4v/tiny_clip.py): not a built-in config
            from m4v.tiny_clip import register_tiny_clip

            register_tiny_clip()
        self.model, _, _ = open_clip.create_model_and_transforms(spec.model, pretrained=spec.weights, device=device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        size = self.model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, E) unit vectors."""
        out = []
        for start in range(0, len(frames), self.batch_size):
            batch = clip_preprocess(frames[start:start + self.batch_size], self.image_size).to(self.device)
            out.append(F.normalize(self.model.encode_image(batch).float(), dim=-1))
        return torch.cat(out).cpu()

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()


def dino_preprocess(frame: np.ndarray, size: int = 224) -> torch.Tensor:
    """VBench dino_transform on one frame: shorter side -> size (bilinear, antialias off), no crop, normalise."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()   # (1, 3, H, W)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False,
                      antialias=False) / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


class DinoBackbone:
    """A timm ViT (dynamic image size, CLS token features) loaded from a local file; frames one at a time,
    as VBench feeds DINO."""

    def __init__(self, spec: BackboneSpec, device: str = "cpu"):
        import timm

        self.spec, self.device = spec, device
        self.model = timm.create_model(spec.model, pretrained=True, num_classes=0, dynamic_img_size=True,
                                       pretrained_cfg_overlay={"file": spec.weights}).to(device).eval()

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, E) unit vectors."""
        ph, pw = self.model.patch_embed.patch_size
        feats = []
        for frame in frames:
            x = dino_preprocess(frame)
            # DINO's stride-16 patch conv drops the remainder rows / columns; timm asserts instead, so crop.
            x = x[..., : x.shape[-2] // ph * ph, : x.shape[-1] // pw * pw]
            feats.append(self.model(x.to(self.device)))
        return F.normalize(torch.cat(feats).float(), dim=-1).cpu()


def _explained(spec: BackboneSpec, load):
    """Run one backbone loader; an unknown model name, truncated or foreign weights, or weights of another
    architecture (each library raises its own type, several with pages of text) -> one line naming the spec."""
    from safetensors import SafetensorError

    try:
        return load()
    except (RuntimeError, AssertionError, SafetensorError, KeyError, ValueError, OSError) as exc:
        text = " ".join(str(exc).split())
        text = text if len(text) <= 200 else text[:200] + " ..."
        raise ValueError(f"--backbone {spec.kind}={spec.model}:{spec.weights}: cannot load "
                         f"({type(exc).__name__}: {text})") from exc


def load_backbones(specs, device: str = "cpu") -> dict:
    """{kind: loaded backbone} for backbone specs (strings or BackboneSpec): the one place that maps a backbone
    kind to its loader. Every loaded backbone carries `.spec`, whose label the records show."""
    specs = [parse_backbone(s) if isinstance(s, str) else s for s in specs]
    by_kind = {spec.kind: spec for spec in specs}   # a later spec of the same kind replaces an earlier one
    loaded = {}
    for kind in ("clip", "dino", "fidelity", "umt"):  # aesthetic last: its head's width is the CLIP's
        spec = by_kind.get(kind)
        if spec is None:
            continue
        loaded[kind] = _explained(spec, lambda spec=spec: _load_one(spec, device))
    if "aesthetic" in by_kind:
        if "clip" not in loaded:
            raise ValueError("--backbone aesthetic=...: the aesthetic head reads CLIP embeddings; give clip=MODEL:PATH")
        from evaluators.aesthetic import AestheticHead

        spec = by_kind["aesthetic"]
        loaded["aesthetic"] = _explained(spec, lambda: AestheticHead(spec, loaded["clip"].model.visual.output_dim))
    return loaded


def _load_one(spec: BackboneSpec, device: str):
    """The loader of one backbone kind (aesthetic aside: it needs the CLIP's width)."""
    if spec.kind == "clip":
        return ClipBackbone(spec, device)
    if spec.kind == "dino":
        return DinoBackbone(spec, device)
    if spec.kind == "fidelity":
        from evaluators.vbench.imaging_quality import FidelityBackbone

        return FidelityBackbone(spec, device)
    from evaluators.vbench.human_action import UMTBackbone

    return UMTBackbone(spec, device)
