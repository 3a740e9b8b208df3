"""VBench dynamic_degree: is there enough large motion? Optical flow on frames sampled to about 8 fps.

VBench computes the flow of every sampled pair, then `check_move` reads the scores in order. With EARLY_STOP (the
default) the pairs are computed only until that decision is fixed: True once count_num pairs exceed thres, False
once the remaining pairs could no longer reach count_num. The decision is the same (tests/test_eval_bench.py);
`pair_scores` then lists the pairs computed. `m4v-bench bench-eval` turns it off to time VBench's loop.
"""

from __future__ import annotations

from evaluators.registry import Declined, Evaluator, Record, register
from evaluators.vbench.flow import flow_magnitude, flow_source, top_fraction_mean

TOP_FRACTION = 0.05      # mean of the top 5 % flow magnitudes per frame pair
THRESHOLD_AT_256 = 6.0   # px, scaled by min(H, W) / 256
COUNT_PER_16 = 4         # pairs above threshold needed, per 16 sampled frames
EARLY_STOP = True        # stop computing flow once the decision is fixed (same decision as computing all)


def sampling_interval(fps: float) -> int:
    """VBench samples every round(fps / 8) frames (at least 1), i.e. to about 8 fps."""
    return max(1, round(fps / 8))


def dynamic_params(height: int, width: int, n_sampled: int) -> dict:
    """thres = 6 * min(H, W) / 256 and count_num = round(4 * n / 16) (Python's round, as VBench)."""
    return {"thres": THRESHOLD_AT_256 * min(height, width) / 256.0, "count_num": round(COUNT_PER_16 * n_sampled / 16.0)}


def check_move(scores, thres: float, count_num: int) -> bool:
    """VBench's check_move: True once count_num pair scores exceed thres (checked after every pair)."""
    count = 0
    for score in scores:
        if score > thres:
            count += 1
        if count >= count_num:
            return True
    return False


def dynamic_degree(frames, fps: float, magnitude=flow_magnitude, early_stop: bool | None = None) -> tuple[bool, list]:
    """(is dynamic, per-pair top-5 % flow scores of the pairs computed) for frames (T, H, W, 3)."""
    sampled = frames[:: sampling_interval(fps)]
    params = dynamic_params(sampled.shape[1], sampled.shape[2], len(sampled))
    pairs = list(zip(sampled[:-1], sampled[1:]))
    if not (EARLY_STOP if early_stop is None else early_stop):
        scores = [top_fraction_mean(magnitude(a, b), TOP_FRACTION) for a, b in pairs]
        return check_move(scores, **params), scores
    scores, count = [], 0
    for index, (a, b) in enumerate(pairs):
        if count + len(pairs) - index < params["count_num"]:
            return False, scores   # even if every remaining pair exceeded thres, count_num is out of reach
        scores.append(top_fraction_mean(magnitude(a, b), TOP_FRACTION))
        count += scores[-1] > params["thres"]
        if count >= params["count_num"]:
            return True, scores
    return False, scores


@register
class DynamicDegree(Evaluator):
    """Per video a bool; aggregate = fraction of dynamic videos. RAFT with `raft=raft_large:raft-things.pth`,
    else OpenCV DIS (substitute)."""

    name = "dynamic_degree"
    score_range = (0.0, 1.0)
    version = "3"   # 3: a video leaving one frame sampled to 8 fps is declined (VBench scores it static)
    optional_backbones = ("raft",)
    faithful_backbone = "raft:raft_large@"   # with RAFT-things weights (VBench's raft-things.pth)

    def __init__(self, raft=None):
        super().__init__(raft=raft)
        self.flow = flow_source(raft)
        self.backbone = self.flow.label

    def evaluate_video(self, video) -> Record:
        sampled = len(range(0, video.num_frames, sampling_interval(video.fps)))
        if sampled < 2:   # one frame sampled: no pair to measure motion on, never "static" by default
            raise Declined(f"{video.source}: {video.num_frames} frame(s) at {video.fps:g} fps leave {sampled} frame "
                           "sampled to 8 fps, no pair to measure motion on")
        moving, scores = dynamic_degree(video.frames, video.fps, self.flow.magnitude)
        return Record(video.source, self.name, float(moving), self.backbone, video.num_frames,
                      {"pair_scores": scores})
