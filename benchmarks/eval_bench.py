"""`m4v-bench bench-eval`: throughput of the weight-free evaluators, frames per second per core."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pandas as pd

from evaluators import Video, get_evaluator
from evaluators.vbench.static_filter import is_static

TARGET_FPS_PER_CORE = 20.0


def synthetic_videos(n_videos: int, n_frames: int, size: int, seed: int = 0) -> list[Video]:
    """Blurred-noise textures drifting by a few pixels per frame: real work for the optical flow."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(n_videos):
        base = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3)).astype(np.uint8), (5, 5), 1.5)
        step = int(rng.integers(0, 4))
        frames = np.stack([np.roll(base, step * t, axis=1) for t in range(n_frames)])
        videos.append(Video(frames, fps=8.0, source=f"synthetic-{i}"))
    return videos


def bench_eval(n_videos: int = 20, n_frames: int = 16, size: int = 64) -> pd.DataFrame:
    """One thread (cv2.setNumThreads(1)), so frames/s is per core."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        videos = synthetic_videos(n_videos, n_frames, size)
        total_frames = n_videos * n_frames
        tasks = {
            "temporal_flickering": get_evaluator("temporal_flickering").evaluate,
            "dynamic_degree": get_evaluator("dynamic_degree").evaluate,
            "motion_smoothness": get_evaluator("motion_smoothness").evaluate,
            "static_filter": lambda vs: [is_static(v.frames) for v in vs],
        }
        rows = []
        for name, run in tasks.items():
            run(videos[:1])  # warm-up
            start = time.perf_counter()
            run(videos)
            seconds = time.perf_counter() - start
            rows.append({"evaluator": name, "videos": n_videos, "frames": total_frames, "size": f"{size}x{size}",
                         "seconds": seconds, "frames_per_s_per_core": total_frames / seconds,
                         "target": TARGET_FPS_PER_CORE})
        return pd.DataFrame(rows)
    finally:
        cv2.setNumThreads(previous)
