"""VBench motion_smoothness: interpolate every odd frame from its even neighbours, compare with the real one.

VBench interpolates with AMT-S. With `--backbone amt=AMT-S:amt-s.pth` the same network runs, built from VBench's
own copy of AMT (`vbench.third_party.amt`, read from the installed vbench package without running the package's
__init__, whose decord import this path never needs); without it, OpenCV DIS optical flow stands in (warp both
neighbours half-way and average), recorded as "opencv-dis-interp", never as VBench's.
"""

from __future__ import annotations

import importlib
import sys
import types

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from evaluators.registry import Evaluator, Record, register
from evaluators.vbench.flow import dense_flow, sintel_pad

BACKBONE = "opencv-dis-interp"
AMT_S_PARAMS = {"corr_radius": 3, "corr_lvls": 4, "num_flows": 3}   # vbench/third_party/amt/cfgs/AMT-S.yaml
# VBench's MotionSmoothness.initialization: the scale that fits a frame in GPU memory (1 on CPU)
ANCHOR_RESOLUTION, ANCHOR_MEMORY, ANCHOR_MEMORY_BIAS = 1024 * 512, 1500 * 1024**2, 2500 * 1024**2


AMT_MODULE = "vbench.third_party.amt.networks.AMT-S"


def import_vbench_amt():
    """VBench's AMT-S module from the installed vbench package. Where vbench is not imported yet, its package
    and third_party folders are entered as bare namespace modules for this import only (so vbench/__init__.py,
    which imports decord, does not run: AMT's files import torch, numpy and PIL alone), then taken out of
    sys.modules again, so a later `import vbench` runs its own __init__ as usual."""
    if "vbench" in sys.modules:
        return importlib.import_module(AMT_MODULE)
    from evaluators.vbench_cache import vbench_package_dir

    root = vbench_package_dir()
    if root is None or not (root / "third_party" / "amt" / "networks" / "AMT-S.py").is_file():
        raise ValueError("--backbone amt=...: AMT-S runs VBench's own AMT code, from the vbench package, which is "
                         "not installed (pip install --no-deps vbench==0.1.5)")
    before = set(sys.modules)
    for name, path in (("vbench", root), ("vbench.third_party", root / "third_party")):
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__path__ = [str(path)]
    try:
        return importlib.import_module(AMT_MODULE)
    finally:
        for name in [n for n in sys.modules if n not in before and (n == "vbench" or n.startswith("vbench."))]:
            del sys.modules[name]


def amt_scale(height: int, width: int, device: str) -> float:
    """VBench's AMT scale factor: 1 on CPU; on a GPU it shrinks with the card's memory, snapped to 1/k * 16."""
    if not str(device).startswith("cuda"):
        return 1.0
    vram = torch.cuda.get_device_properties(device).total_memory
    scale = ANCHOR_RESOLUTION / (height * width) * np.sqrt((vram - ANCHOR_MEMORY_BIAS) / ANCHOR_MEMORY)
    scale = min(scale, 1.0)
    return float(1 / np.floor(1 / np.sqrt(scale) * 16) * 16)


class AmtInterpolator:
    """AMT-S from VBench's own AMT code, with VBench's checkpoint; interpolates as VBench's motion_score does:
    RGB / 255, replicate padding to a multiple of 16 / scale, embt = 0.5, one pass, x255 truncated to uint8."""

    def __init__(self, spec, device: str = "cpu"):
        from evaluators.backbone_loading import load_state_file

        try:
            network = import_vbench_amt()
        except ImportError as exc:
            raise ValueError(f"--backbone amt=...: AMT-S runs VBench's own AMT code; importing it failed "
                             f"({exc})") from exc
        self.spec, self.device, self.label = spec, device, spec.label
        self.model = network.Model(**AMT_S_PARAMS)
        if spec.weights:
            state = load_state_file(spec.weights)
            self.model.load_state_dict(state.get("state_dict", state))
        self.model.to(device).eval()
        self.embt = torch.tensor(0.5).float().view(1, 1, 1, 1).to(device)

    @torch.no_grad()
    def __call__(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """The uint8 frame half-way between two uint8 RGB frames."""
        scale = amt_scale(*frame0.shape[:2], self.device)
        pad = sintel_pad(frame0.shape[:2], int(16 / scale))
        pair = [F.pad(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float().div(255.0),
                      pad, mode="replicate").to(self.device) for f in (frame0, frame2)]
        mid = self.model(pair[0], pair[1], self.embt, scale_factor=scale, eval=True)["imgt_pred"]
        height, width = mid.shape[-2:]
        mid = mid[..., pad[2]:height - pad[3], pad[0]:width - pad[1]]
        # .float(): under autocast the network's output is bf16, which numpy cannot hold
        return (mid.float() * 255.0).squeeze(0).permute(1, 2, 0).cpu().numpy().clip(0, 255).astype(np.uint8)


def flow_midpoint(frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
    """The frame half-way between two uint8 frames: each warped half its flow towards the other, averaged."""
    h, w = frame0.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)  # (H, W, 2) x, y

    def warp(src, flow):  # sample src at x - flow / 2 (backward warp, flow taken at the target pixel)
        coords = grid - 0.5 * flow
        return cv2.remap(src, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    mid = 0.5 * (warp(frame0, dense_flow(frame0, frame2)).astype(np.float32)
                 + warp(frame2, dense_flow(frame2, frame0)).astype(np.float32))
    return np.clip(np.rint(mid), 0, 255).astype(np.uint8)


def motion_smoothness_score(frames: np.ndarray, interpolate=flow_midpoint) -> float:
    """(255 - mean_k MAE(interp(f_2k, f_2k+2), f_2k+1)) / 255, MAE as cv2.absdiff mean on uint8 (VBench)."""
    maes = [np.mean(cv2.absdiff(interpolate(frames[i], frames[i + 2]), frames[i + 1]))
            for i in range(0, len(frames) - 2, 2)]
    if not maes:
        return float("nan")
    return float((255.0 - np.mean(maes)) / 255.0)


@register
class MotionSmoothness(Evaluator):
    """Per video the score above; aggregate = mean over videos (VBench). AMT-S when given, else DIS."""

    name = "motion_smoothness"
    score_range = (0.0, 1.0)   # (255 - mean abs error) / 255
    version = "2"
    optional_backbones = ("amt",)
    faithful_backbone = "amt:AMT-S@"

    def __init__(self, amt=None):
        super().__init__(amt=amt)
        self.interpolate = amt if amt is not None else flow_midpoint
        self.backbone = amt.label if amt is not None else BACKBONE

    def evaluate_video(self, video) -> Record:
        return Record(video.source, self.name, motion_smoothness_score(video.frames, self.interpolate),
                      self.backbone, video.num_frames)
