"""VBench's static filter (vbench/cli/static_filter.py, run before temporal_flickering): keep only videos
without large motion, at most 5 per prompt."""

from __future__ import annotations

from evaluators.vbench.flow import flow_magnitude, top_fraction_mean

TOP_FRACTION = 0.02      # mean of the top 2 % flow magnitudes per pair
THRESHOLD_AT_256 = 3.0   # px, scaled by min(H, W) / 256
COUNT_PER_16 = 2
MAX_PER_PROMPT = 5       # VBench keeps the first 5 static videos of each temporal_flickering prompt


def is_static(frames, magnitude=flow_magnitude) -> bool:
    """Static iff (a) at most count_num consecutive pairs exceed thres and (b) both wrap-around pairs
    (first -> last, last -> first) stay <= thres * count_num * 2 (VBench static_filter.py)."""
    height, width = frames.shape[1:3]
    thres = THRESHOLD_AT_256 * min(height, width) / 256.0
    count_num = round(COUNT_PER_16 * len(frames) / 16.0)
    consecutive = [top_fraction_mean(magnitude(a, b), TOP_FRACTION) for a, b in zip(frames[:-1], frames[1:])]
    wrap = [top_fraction_mean(magnitude(frames[0], frames[-1]), TOP_FRACTION),
            top_fraction_mean(magnitude(frames[-1], frames[0]), TOP_FRACTION)]
    return sum(s > thres for s in consecutive) <= count_num and all(s <= thres * count_num * 2 for s in wrap)
