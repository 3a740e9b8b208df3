"""Per-video rows back to records, a dimension's own aggregate of them, and a run's primary metric."""

from __future__ import annotations

import json

import pandas as pd

from evaluators import EVALUATORS
from evaluators.registry import Record
from evaluators.vbench.scoring import NORMALIZATION


def _aggregate(dimension: str, records: list[Record]) -> float:
    """The dimension's own aggregate (frame- or video-weighted), read off its evaluator class."""
    cls = EVALUATORS[dimension]
    return cls.aggregate(object.__new__(cls), records)


def _records(part: pd.DataFrame) -> list[Record]:
    return [Record(r.video, r.dimension, float(r.score), r.backbone, int(r.n_frames), json.loads(r.extra))
            for r in part.itertuples()]


def primary_metric(summary: pd.DataFrame, preferred: str | None) -> str | None:
    """The quality axis: the suite's choice, else VBench Total (VBench's rule when all 16 dimensions are scored,
    the present-dimensions reading when some are missing), else the first higher-is-better metric with a value."""
    if preferred and preferred in summary:
        return preferred
    complete = "vbench_dimensions" in summary and (summary["vbench_dimensions"] == len(NORMALIZATION)).all()
    total = "vbench_total" if complete else "vbench_total_present"
    if total in summary and summary[total].notna().any() and summary["vbench_dimensions"].gt(0).all():
        return total
    for dim in EVALUATORS:
        if dim in summary and EVALUATORS[dim].higher_is_better and summary[dim].notna().any():
            return dim
    return None
