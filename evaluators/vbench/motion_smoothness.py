"""VBench motion_smoothness: interpolate every odd frame from its even neighbours, compare with the real one.

VBench interpolates with AMT-S; offline we interpolate with OpenCV DIS optical flow (warp both neighbours
half-way and average), recorded as backbone "opencv-dis-interp", never as a VBench score.
"""

from __future__ import annotations

import cv2
import numpy as np

from evaluators.registry import Evaluator, Record, register
from evaluators.vbench.flow import dense_flow

BACKBONE = "opencv-dis-interp"


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
    """Per video the score above; aggregate = mean over videos (VBench). Substitute interpolator."""

    name = "motion_smoothness"
    version = "1"
    backbone = BACKBONE

    def evaluate_video(self, video) -> Record:
        return Record(video.source, self.name, motion_smoothness_score(video.frames), self.backbone,
                      video.num_frames)
