"""VBench imaging_quality: a no-reference image-quality model on every frame; per video the mean score in
0-100 units, aggregate = mean over videos / 100 (VBench, MUSIQ-SPAQ through pyiqa).

With `--backbone musiq=musiq-spaq:musiq_spaq_ckpt-358bb6af.pth` it is VBench's own computation: pyiqa's MUSIQ
(`pyiqa.archs.musiq_arch.MUSIQ`, VBench's default config) with that checkpoint, every frame of VBench's
`load_video` float32 tensor, VBench's default "longer" preprocessing (longer side > 512 -> 512, bilinear without
antialiasing, int()-truncated sides; /255), the per-frame scores summed as Python floats and divided by the frame
count (tests/test_vbench_musiq_viclip.py runs VBench's compute_imaging_quality beside it).

Without it the shipped fidelity model stands in (m4v/fidelity.py: trained to rank clean world renders above
blurred, noisy, ghosted, resampled ones — the degradations MUSIQ penalises), scored as 100 * sigmoid(score) on
frames resized to its 64x64 training size. Its rows carry backbone "fidelity:..." and are never reported as VBench
scores (substitute).
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from evaluators.backbone_loading import load_state_file
from evaluators.registry import Evaluator, Record, register

INPUT_SIZE = 64  # the fidelity model's training resolution
MUSIQ_LONGER_SIDE = 512   # VBench's imaging_quality transform, "longer" mode (its default)
MUSIQ_MODELS = ("musiq-spaq",)   # VBench's MUSIQ: pyiqa's default architecture with the SPAQ checkpoint


def musiq_preprocess(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, h, w) in [0, 1]: VBench's `transform(images, "longer")` on load_video's
    float32 0..255 tensor (longer side above 512 -> 512 by torchvision's bilinear Resize, antialias off, sides
    int(scale * side) as VBench computes them), then /255."""
    from torchvision.transforms import Resize

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()   # (T, 3, H, W), as load_video
    height, width = x.shape[-2:]
    if max(height, width) > MUSIQ_LONGER_SIDE:
        scale = float(MUSIQ_LONGER_SIDE) / max(height, width)   # VBench's expression; int() truncates (644 -> 511)
        x = Resize(size=(int(scale * height), int(scale * width)), antialias=False)(x)
    return x / 255.0


class MusiqBackbone:
    """pyiqa's MUSIQ with a local checkpoint, e.g. `musiq=musiq-spaq:musiq_spaq_ckpt-358bb6af.pth` (VBench's
    file, a plain state dict; "module." prefixes removed as pyiqa's loader does), loaded strictly as pyiqa does."""

    def __init__(self, spec, device: str = "cpu", batch_size: int = 8):
        if spec.model not in MUSIQ_MODELS:
            raise ValueError(f"--backbone musiq={spec.model}: unknown MUSIQ model; known: {MUSIQ_MODELS}")
        try:
            from pyiqa.archs.musiq_arch import MUSIQ
        except ImportError as exc:
            raise ValueError("--backbone musiq=...: needs pyiqa (`pip install --no-deps pyiqa==0.1.16`; "
                             f"`make venv` installs it): {exc}") from exc
        self.spec, self.device, self.batch_size = spec, device, batch_size
        model = MUSIQ(pretrained=False)   # VBench: MUSIQ(pretrained_model_path=...), i.e. this config, 1 output
        state = load_state_file(spec.weights)
        if not isinstance(state, dict):
            raise ValueError(f"{spec.weights}: not a state dict")
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
        self.model = model.to(device).eval()

    @torch.no_grad()
    def score_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T,) MUSIQ scores (SPAQ: 0-100), frames batched (MUSIQ scores each on its own)."""
        x = musiq_preprocess(frames)                                                 # (T, 3, h, w)
        out = [self.model(x[s:s + self.batch_size].to(self.device)).float().reshape(-1)
               for s in range(0, len(x), self.batch_size)]
        return torch.cat(out).cpu()


class FidelityBackbone:
    """The fidelity model (m4v.fidelity.FidelityReward): the weights file the spec names, config.json beside it."""

    def __init__(self, spec, device: str = "cpu", batch_size: int = 64):
        from pathlib import Path

        from m4v.fidelity import FidelityReward

        self.spec, self.device, self.batch_size = spec, device, batch_size
        weights = Path(spec.weights)
        config = weights.parent / "config.json"        # the architecture beside the weights (save_pretrained)
        if not config.is_file():
            raise FileNotFoundError(f"--backbone {spec.kind}={spec.model}:{weights}: no config.json beside it")
        model = FidelityReward(**json.loads(config.read_text()))
        model.load_state_dict(load_state_file(weights))   # exactly the file the spec names (and its label shows)
        self.model = model.to(device).eval()

    @torch.no_grad()
    def score_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T,) quality in [0, 100]."""
        out = []
        for start in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.batch_size])).permute(0, 3, 1, 2)
            x = x.float().to(self.device) / 127.5 - 1                                    # (b, 3, H, W) in [-1, 1]
            if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
                x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True,
                                  align_corners=False)
            out.append(100 * torch.sigmoid(self.model(x)))
        return torch.cat(out).cpu()


@register
class ImagingQuality(Evaluator):
    """Per video: mean frame quality (0-100); aggregate: mean over videos / 100. MUSIQ when given, else the
    fidelity substitute."""

    name = "imaging_quality"
    score_range = (0.0, 100.0)   # 100 sigmoid per frame
    version = "2"   # 2: per-video mean as VBench sums it (Python floats), MUSIQ as an optional backbone
    backbones = ("fidelity",)
    optional_backbones = ("musiq",)
    faithful_backbone = "musiq:musiq-spaq@"

    def __init__(self, fidelity, musiq=None):
        super().__init__(fidelity=fidelity, musiq=musiq)
        self.model = musiq if musiq is not None else fidelity
        self.backbone = self.model.spec.label

    def evaluate_video(self, video) -> Record:
        per_frame = self.model.score_frames(video.frames).tolist()
        # VBench: acc_score_video += float(score) per frame, then / len (Python floats, in frame order)
        return Record(video.source, self.name, sum(per_frame) / len(per_frame), self.backbone, video.num_frames,
                      {"per_frame": per_frame})

    def aggregate(self, records) -> float:
        return float(np.mean([r.score for r in records])) / 100 if records else float("nan")
