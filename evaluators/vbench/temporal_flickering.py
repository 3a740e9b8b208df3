"""VBench temporal_flickering: 1 - mean absolute change between consecutive frames, on the videos VBench's
static filter keeps (the score itself is weight-free and exact; the filter's flow is RAFT or the DIS stand-in).

VBench's protocol (vbench/cli/static_filter.py, then `evaluate`): in standard mode, per model folder and per
temporal_flickering prompt, the videos are visited in sorted file-name order and the filter runs only until 5 are
kept (the quota is checked before the flow is computed); the rest are never scored. In custom-input mode (no
prompt suite) VBench's `evaluate` scores every video and no filter runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evaluators.registry import Declined, Evaluator, Record, register
from evaluators.vbench.flow import flow_source
from evaluators.vbench.static_filter import MAX_PER_PROMPT, is_static


def temporal_flickering_score(frames: np.ndarray) -> float:
    """(255 - mean_i MAE(f_i, f_{i+1})) / 255 over all pixels and channels, op for op as VBench's cal_score:
    float32 MAEs, their float32 mean taken to a Python float, then float64 arithmetic."""
    if len(frames) < 2:
        return float("nan")  # VBench: np.mean of no pairs is nan
    maes = np.array([np.mean(np.abs(frames[i].astype(np.float32) - frames[i + 1].astype(np.float32)))
                     for i in range(len(frames) - 1)])
    return (255.0 - np.mean(maes).item()) / 255.0


def quota_reason(prompt: str) -> str:
    return (f"VBench's static filter stops after the first {MAX_PER_PROMPT} static videos of prompt {prompt!r} "
            "(in file-name order): not examined")


def _is_static_row(row: dict) -> bool:
    extra = row.get("extra") or "{}"
    return bool((json.loads(extra) if isinstance(extra, str) else extra).get("static"))


@register
class TemporalFlickering(Evaluator):
    """Per video (255 - mean MAE) / 255 on static videos; aggregate = mean over videos (VBench).

    With a prompt suite, videos the static filter drops are declined with the reason, and so is every video of a
    (model, prompt) after its 5th static one in file-name order (VBench's quota). Without one, every video is
    scored unfiltered, as VBench's custom-input mode does."""

    name = "temporal_flickering"
    score_range = (0.0, 1.0)   # (255 - mean abs error) / 255
    version = "3"
    optional_backbones = ("raft",)
    faithful_backbone = "static-filter:raft:raft_large@"   # the filter's flow is RAFT-things, as VBench's

    def __init__(self, raft=None):
        super().__init__(raft=raft)
        self.flow = flow_source(raft)
        self.backbone = f"static-filter:{self.flow.label}"
        # (model folder, prompt) -> file names known to be static (computed here or read from the cache)
        self.static_seen: dict[tuple, set] = {}

    @staticmethod
    def _group(video) -> tuple:
        return str(Path(video.source).parent), video.prompt

    def evaluate_video(self, video) -> Record:
        if (video.aux or {}).get("dimension") is None:   # custom input: VBench scores it unfiltered
            return Record(video.source, self.name, temporal_flickering_score(video.frames), self.backbone,
                          video.num_frames, {"static_filter": "not run (custom input, as VBench)"})
        name = Path(video.source).name
        earlier = sum(other < name for other in self.static_seen.get(self._group(video), ()))
        if earlier >= MAX_PER_PROMPT:   # the quota before the flow: VBench never looks at this video
            raise Declined(f"{video.source}: {quota_reason(video.prompt)}", cacheable=False)
        if not is_static(video.frames, self.flow.magnitude):
            raise Declined(f"{video.source}: not static (VBench's static filter drops it before temporal_flickering)",
                           extra={"static": False})
        return Record(video.source, self.name, temporal_flickering_score(video.frames), self.backbone,
                      video.num_frames, {"static": True})

    def observe(self, video, row: dict) -> None:
        if _is_static_row(row):
            self.static_seen.setdefault(self._group(video), set()).add(Path(video.source).name)

    @classmethod
    def finalize(cls, rows: list[dict]) -> list[dict]:
        """VBench's quota over the gathered rows: per (model, prompt), in file-name order, every video after the
        5th static one is declined unexamined, whichever rank or run examined it."""
        groups: dict = {}
        for row in rows:   # the filtered protocol's rows (custom-input rows are scored unfiltered, no quota)
            if row["status"] == "declined" or _is_static_row(row):
                groups.setdefault((row["model"], row["prompt"]), []).append(row)
        past_quota = {}
        for members in groups.values():
            kept = 0
            for row in sorted(members, key=lambda r: Path(r["video"]).name):
                if kept >= MAX_PER_PROMPT:
                    past_quota[id(row)] = {**row, "score": None, "status": "declined", "extra": "{}",
                                           "reason": quota_reason(row["prompt"])}
                kept += row["status"] == "ok"
        return [past_quota.get(id(row), row) for row in rows]
