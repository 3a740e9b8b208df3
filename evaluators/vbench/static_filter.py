"""VBench's static filter (vbench/cli/static_filter.py, run before temporal_flickering): keep only videos
without large motion, at most 5 per prompt.

VBench computes the flow of every pair and then decides (`check_static`). With EARLY_STOP (the default) the pairs
are computed in VBench's order only until the decision is fixed: False once more than count_num consecutive pairs
exceed thres, and the last consecutive pairs are skipped once they can no longer push the count past count_num.
The decision is the same (tests/test_eval_bench.py); `m4v-bench bench-eval` turns it off to time VBench's loop.
"""

from __future__ import annotations

from evaluators.vbench.flow import flow_magnitude, top_fraction_mean

TOP_FRACTION = 0.02      # mean of the top 2 % flow magnitudes per pair
THRESHOLD_AT_256 = 3.0   # px, scaled by min(H, W) / 256
COUNT_PER_16 = 2
MAX_PER_PROMPT = 5       # VBench keeps the first 5 static videos of each temporal_flickering prompt
EARLY_STOP = True        # stop computing flow once the decision is fixed (same decision as computing all)


def static_params(height: int, width: int, n_frames: int) -> dict:
    """thres = 3 * min(H, W) / 256 and count_num = round(2 * T / 16) (VBench's set_params)."""
    return {"thres": THRESHOLD_AT_256 * min(height, width) / 256.0, "count_num": round(COUNT_PER_16 * n_frames / 16.0)}


def check_static(scores, thres: float, count_num: int) -> bool:
    """VBench's check_static: the last two scores are the wrap-around pairs, the others consecutive pairs."""
    count = 0
    for score in scores[:-2]:
        if score > thres:
            count += 1
        if count > count_num:
            return False
    return all(not score > thres * count_num * 2 for score in scores[-2:])


def is_static(frames, magnitude=flow_magnitude, early_stop: bool | None = None) -> bool:
    """Static iff (a) at most count_num consecutive pairs exceed thres and (b) both wrap-around pairs
    (first -> last, last -> first) stay <= thres * count_num * 2 (VBench static_filter.py)."""
    params = static_params(frames.shape[1], frames.shape[2], len(frames))
    thres, count_num = params["thres"], params["count_num"]
    consecutive = list(zip(frames[:-1], frames[1:]))
    wrap = [(frames[0], frames[-1]), (frames[-1], frames[0])]

    def score(pair) -> float:
        return top_fraction_mean(magnitude(*pair), TOP_FRACTION)

    if not (EARLY_STOP if early_stop is None else early_stop):
        return check_static([score(pair) for pair in consecutive + wrap], thres, count_num)
    count = 0
    for index, pair in enumerate(consecutive):
        if count + len(consecutive) - index <= count_num:
            break   # even if every remaining pair exceeded thres, the count would stay <= count_num
        count += score(pair) > thres
        if count > count_num:
            return False
    return all(not score(pair) > thres * count_num * 2 for pair in wrap)
