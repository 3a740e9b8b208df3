"""What loading a backbone needs, with none of the backbone classes: the `--backbone KIND=MODEL:PATH` spec, the
local weights-file reader, VBench's normalisation constants and the frame content key.

The backbone modules (evaluators/backbones.py's CLIP and DINO, aesthetic.py, vbench/flow.py, motion_smoothness.py,
imaging_quality.py, human_action.py, world_oracle.py) import these from here, and evaluators/backbones.py imports
their classes to load them: the imports go one way. evaluators.backbones re-exports every name (compatibility).
Importing this module imports neither torch nor a backbone library (torch is imported when a file is loaded).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKBONE_KINDS = ("clip", "dino", "aesthetic", "aesthetic_clip", "fidelity", "umt", "raft", "amt", "musiq", "viclip")
BACKBONE_USAGE = {"clip": "clip=OPEN_CLIP_MODEL:PATH (VBench's: ViT-B-32-quickgelu)",
                  "dino": "dino=dino_vitb16:PATH", "aesthetic": "aesthetic=linear:PATH (with aesthetic_clip=...)",
                  "aesthetic_clip": "aesthetic_clip=ViT-L-14-quickgelu:PATH", "fidelity": "fidelity=fidelity-tiny:PATH",
                  "umt": "umt=vit_large_patch16_224:PATH", "raft": "raft=raft_large:PATH", "amt": "amt=AMT-S:PATH",
                  "musiq": "musiq=musiq-spaq:PATH", "viclip": "viclip=ViCLIP-L-14:PATH"}
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
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors surface as several types
        raise ValueError(f"{path} does not load with weights_only=True ({type(exc).__name__}); save its state_dict "
                         "alone, or as safetensors") from exc



def frame_key(frame: np.ndarray) -> bytes:
    """A content key of one frame: the same pixels give the same key whichever array they sit in."""
    digest = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16)
    digest.update(repr(frame.shape).encode())
    return digest.digest()
