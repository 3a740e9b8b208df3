"""Optical flow for VBench's motion dimensions (dynamic_degree, the static filter of temporal_flickering).

VBench runs RAFT-things (iters=20, test_mode) on float RGB frames padded to a multiple of 8 (replicate, RAFT's
"sintel" InputPadder) and scores the padded flow. With `--backbone raft=raft_large:PATH` the same runs through
torchvision's RAFT (the original RAFT-things checkpoint is converted to torchvision's layout on load); without
it, OpenCV DIS stands in (offline, weight-free), recorded as "opencv-dis" and never labelled RAFT. Both memoise
the flow of a frame pair, so the static filter and dynamic_degree share it.

With the memo on, RAFT also reuses a frame's feature-encoder output across its two pairs ((i-1, i) and (i, i+1))
and upsamples only the last of the 20 iterations (the one VBench scores); the flow is bit-identical to
torchvision's forward (tests/test_eval_bench.py). With the memo off it runs torchvision's forward, as VBench runs
its RAFT. Frames under 128 px, which torchvision's RAFT refuses, run as RAFT's own code runs them
(build_pyramid_as_raft).
"""

from __future__ import annotations

import re
from collections import OrderedDict

import cv2
import numpy as np
import torch
import torch.nn.functional as F

BACKBONE = "opencv-dis"  # recorded on every row scored with it; never labelled as RAFT
RAFT_ITERS = 20          # VBench: iters=20, test_mode=True
MEMO_PAIRS = 64          # flow maps kept (about 1.6 MB each at 480x854): a video's pairs and then some
FEATURE_FRAMES = 4       # RAFT encoder outputs kept (about 6.6 MB each at 480x854): consecutive pairs share one


def dense_flow(frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
    """Flow (H, W, 2) (dx, dy) from frame1 to frame2, both (H, W, 3) uint8 RGB, at native resolution."""
    g1, g2 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (frame1, frame2))
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g1, g2, None)


def flow_magnitude(frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
    """|flow| (H, W) from frame1 to frame2 (OpenCV DIS)."""
    flow = dense_flow(frame1, frame2)
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)


def top_fraction_mean(magnitude: np.ndarray, fraction: float) -> float:
    """Mean of the largest `fraction` of values (VBench: cut_index = int(H * W * fraction), topk, mean)."""
    flat = magnitude.ravel()
    k = int(flat.size * fraction)
    if k < 1:
        return float("nan")
    return float(np.mean(np.partition(flat, flat.size - k)[-k:]))


class _PairMemo:
    """Flow magnitudes of frame pairs already computed, keyed by the two frames' contents."""

    memo_enabled = True

    def __init__(self):
        self.store = OrderedDict()
        self.pairs_computed = 0   # flow computations actually run (memo misses), for benchmarks

    def magnitude(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        from evaluators.backbone_loading import frame_key

        if not self.memo_enabled:
            self.pairs_computed += 1
            return self._compute(frame1, frame2)
        key = (frame_key(frame1), frame_key(frame2))
        if key not in self.store:
            self.pairs_computed += 1
            self.store[key] = self._compute(frame1, frame2)
            if len(self.store) > MEMO_PAIRS:
                self.store.popitem(last=False)
        return self.store[key]

    def clear(self) -> None:
        """Forget memoised flows (and the counter)."""
        self.store.clear()
        self.pairs_computed = 0

    def _compute(self, frame1, frame2) -> np.ndarray:
        raise NotImplementedError


class DisFlow(_PairMemo):
    """OpenCV DIS in RAFT's place, memoised."""

    label = BACKBONE

    def _compute(self, frame1, frame2) -> np.ndarray:
        return flow_magnitude(frame1, frame2)


def sintel_pad(dims: tuple, divisor: int = 8) -> list[int]:
    """RAFT's InputPadder(mode='sintel') (AMT's with divisor 16): [left, right, top, bottom] to a multiple."""
    height, width = dims
    pad_h, pad_w = (-height) % divisor, (-width) % divisor
    return [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]


# Original RAFT (princeton-vl/RAFT, the raft-things.pth VBench loads) -> torchvision.models.optical_flow names.
_RAFT_RENAMES = [
    (r"^(fnet|cnet)\.", lambda m: {"fnet": "feature_encoder.", "cnet": "context_encoder."}[m.group(1)]),
    (r"^(feature_encoder|context_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(feature_encoder|context_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(feature_encoder|context_encoder)\.conv2\.", r"\1.conv."),
    (r"(layer\d\.\d)\.conv1\.", r"\1.convnormrelu1.0."),
    (r"(layer\d\.\d)\.norm1\.", r"\1.convnormrelu1.1."),
    (r"(layer\d\.\d)\.conv2\.", r"\1.convnormrelu2.0."),
    (r"(layer\d\.\d)\.norm2\.", r"\1.convnormrelu2.1."),
    (r"(layer\d\.\d)\.norm3\.", r"\1.downsample.1."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", r"update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])1\.", r"update_block.recurrent_block.convgru1.conv\1."),
    (r"^update_block\.gru\.conv([zrq])2\.", r"update_block.recurrent_block.convgru2.conv\1."),
    (r"^update_block\.mask\.0\.", r"mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", r"mask_predictor.conv."),
]


def raft_to_torchvision(state: dict) -> dict:
    """An original RAFT state dict (DataParallel 'module.' prefix allowed) renamed to torchvision's raft_large."""
    if not any(k.removeprefix("module.").startswith("fnet.") for k in state):
        return state   # already torchvision's layout
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for pattern, repl in _RAFT_RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def build_pyramid_as_raft(corr_block, fmap1: torch.Tensor, fmap2: torch.Tensor) -> None:
    """torchvision's CorrBlock.build_pyramid without its size check, which refuses feature maps under 16 px
    (frames under 128 px). RAFT's own CorrBlock (VBench's vbench/third_party/RAFT/core/corr.py) has no check and
    runs: from 64 to 127 px a pyramid level is one pixel wide, RAFT's coordinate normalisation divides by zero
    and the flow is NaN (VBench then reads every pair as still); under 64 px avg_pool2d fails, in both. torchvision
    has no switch for the check, so its body (all-pairs volume / sqrt(C), num_levels - 1 2x2 average pools) is
    repeated here."""
    corr_volume = corr_block._compute_corr_volume(fmap1, fmap2)                  # (B, h, w, 1, h, w)
    batch_size, h, w, num_channels, _, _ = corr_volume.shape
    corr_volume = corr_volume.reshape(batch_size * h * w, num_channels, h, w)
    corr_block.corr_pyramid = [corr_volume]
    for _ in range(corr_block.num_levels - 1):
        corr_volume = F.avg_pool2d(corr_volume, kernel_size=2, stride=2)
        corr_block.corr_pyramid.append(corr_volume)


class RaftFlow(_PairMemo):
    """RAFT-large (torchvision's module) run as VBench runs RAFT: float RGB in 0..255 scaled to [-1, 1] (what
    RAFT's forward does), sintel replicate padding to a multiple of 8, 20 iterations, the padded flow's norm."""

    def __init__(self, spec, device: str = "cpu"):
        super().__init__()
        from torchvision.models.optical_flow import raft_large

        self.spec, self.device = spec, device
        self.model = raft_large(weights=None)
        if spec.weights:
            from evaluators.backbone_loading import load_state_file

            state = raft_to_torchvision(load_state_file(spec.weights))
            try:
                self.model.load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(f"{spec.weights}: not a RAFT-large checkpoint ({str(exc).splitlines()[0]})") from exc
        self.model.to(device).eval()
        corr_block = self.model.corr_block   # frames under 128 px run as RAFT's own code runs them
        corr_block.build_pyramid = lambda fmap1, fmap2: build_pyramid_as_raft(corr_block, fmap1, fmap2)
        self.label = spec.label
        self.features = OrderedDict()   # frame key -> {"fmap": feature encoder output, "context": ...}
        self.features_computed = 0      # feature-encoder frames run on the reuse path, for benchmarks

    def clear(self) -> None:
        """Forget memoised flows and encoder outputs (and the counters)."""
        super().clear()
        self.features.clear()
        self.features_computed = 0

    def _image(self, frame: np.ndarray) -> torch.Tensor:
        """(1, 3, H', W'): RGB as float, sintel replicate padding, scaled to [-1, 1] (RAFT's own first step)."""
        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float().to(self.device)
        image = F.pad(image, sintel_pad(image.shape[-2:]), mode="replicate")
        return 2 * (image / 255.0) - 1.0

    @torch.no_grad()
    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> torch.Tensor:
        """(2, H', W') flow on the padded frames, as VBench scores it."""
        if self.memo_enabled:
            return self._flow_reusing_features(frame1, frame2).float().cpu()
        pair = torch.cat([self._image(frame1), self._image(frame2)])                     # (2, 3, H', W')
        return self.model(pair[:1], pair[1:], num_flow_updates=RAFT_ITERS)[-1][0].float().cpu()

    def _entry(self, frame: np.ndarray) -> dict:
        """The memo entry of one frame (LRU over FEATURE_FRAMES frames)."""
        from evaluators.backbone_loading import frame_key

        key = frame_key(frame)
        entry = self.features.get(key)
        if entry is None:
            entry = self.features[key] = {"image": self._image(frame)}
            if len(self.features) > FEATURE_FRAMES:
                self.features.popitem(last=False)
        else:
            self.features.move_to_end(key)
        return entry

    def _fmap(self, entry: dict) -> torch.Tensor:
        if "fmap" not in entry:
            # one frame per call: the encoder normalises per image, and a batch of one gives the same bits as
            # torchvision's batch of two (checked by tests/test_eval_bench.py)
            entry["fmap"] = self.model.feature_encoder(entry["image"])
            self.features_computed += 1
        return entry["fmap"]

    def _flow_reusing_features(self, frame1: np.ndarray, frame2: np.ndarray) -> torch.Tensor:
        """torchvision's RAFT.forward op for op, with the encoders' outputs memoised per frame and only the last
        iteration's flow upsampled (the 19 earlier upsamplings are discarded by VBench)."""
        from torchvision.models.optical_flow._utils import make_coords_grid, upsample_flow

        model = self.model
        first, second = self._entry(frame1), self._entry(frame2)
        fmap1, fmap2 = self._fmap(first), self._fmap(second)
        model.corr_block.build_pyramid(fmap1, fmap2)
        if "context" not in first:
            first["context"] = model.context_encoder(first["image"])
        context_out = first["context"]
        hidden_size = model.update_block.hidden_state_size
        hidden_state, context = torch.split(context_out, [hidden_size, context_out.shape[1] - hidden_size], dim=1)
        hidden_state, context = torch.tanh(hidden_state), F.relu(context)
        batch, _, h, w = fmap1.shape
        coords0 = make_coords_grid(batch, h, w).to(fmap1.device)
        coords1 = make_coords_grid(batch, h, w).to(fmap1.device)
        for _ in range(RAFT_ITERS):
            corr_features = model.corr_block.index_pyramid(centroids_coords=coords1)
            hidden_state, delta_flow = model.update_block(hidden_state, context, corr_features, coords1 - coords0)
            coords1 = coords1 + delta_flow
        up_mask = None if model.mask_predictor is None else model.mask_predictor(hidden_state)
        return upsample_flow(flow=(coords1 - coords0), up_mask=up_mask)[0]

    def _compute(self, frame1, frame2) -> np.ndarray:
        flow = self.flow(frame1, frame2).numpy()
        return np.sqrt(np.square(flow[0]) + np.square(flow[1]))


def flow_source(raft):
    """The RAFT backbone when loaded, else the DIS stand-in (one shared instance, so its memo is shared)."""
    return raft if raft is not None else _DIS


_DIS = DisFlow()
