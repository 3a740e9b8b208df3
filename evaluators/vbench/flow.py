"""Optical flow for VBench's motion dimensions: OpenCV DIS in place of RAFT (offline, weight-free)."""

from __future__ import annotations

import cv2
import numpy as np

BACKBONE = "opencv-dis"  # recorded on every row scored with it; never labelled as RAFT


def dense_flow(frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
    """Flow (H, W, 2) (dx, dy) from frame1 to frame2, both (H, W, 3) uint8 RGB, at native resolution."""
    g1, g2 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (frame1, frame2))
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g1, g2, None)


def flow_magnitude(frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
    """|flow| (H, W) from frame1 to frame2."""
    flow = dense_flow(frame1, frame2)
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)


def top_fraction_mean(magnitude: np.ndarray, fraction: float) -> float:
    """Mean of the largest `fraction` of values (VBench: cut_index = int(H * W * fraction), topk, mean)."""
    flat = magnitude.ravel()
    k = int(flat.size * fraction)
    if k < 1:
        return float("nan")
    return float(np.mean(np.partition(flat, flat.size - k)[-k:]))
