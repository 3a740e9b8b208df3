"""VBench's normalisation and Quality / Semantic / Total (scripts/constant.py, scripts/cal_final_score.py).

Constants from ../shared/reference/evaluators-vbench-clip-flops.md §1.6. Three readings of a run that scores a
subset: `vbench_scores_missing_zero` is VBench's (a missing dimension counts as raw 0), `vbench_scores_present`
re-weights over the dimensions present, and `vbench_scores` makes a missing dimension NaN with a warning.
Like VBench, normalised values are not clipped to [0, 1].
"""

from __future__ import annotations

import math
import warnings

# dimension: (Min, Max, weight, group)
NORMALIZATION = {
    "subject_consistency": (0.1462, 1.0, 1.0, "quality"),
    "background_consistency": (0.2615, 1.0, 1.0, "quality"),
    "temporal_flickering": (0.6293, 1.0, 1.0, "quality"),
    "motion_smoothness": (0.706, 0.9975, 1.0, "quality"),
    "dynamic_degree": (0.0, 1.0, 0.5, "quality"),
    "aesthetic_quality": (0.0, 1.0, 1.0, "quality"),
    "imaging_quality": (0.0, 1.0, 1.0, "quality"),
    "object_class": (0.0, 1.0, 1.0, "semantic"),
    "multiple_objects": (0.0, 1.0, 1.0, "semantic"),
    "human_action": (0.0, 1.0, 1.0, "semantic"),
    "color": (0.0, 1.0, 1.0, "semantic"),
    "spatial_relationship": (0.0, 1.0, 1.0, "semantic"),
    "scene": (0.0, 0.8222, 1.0, "semantic"),
    "appearance_style": (0.0009, 0.2855, 1.0, "semantic"),
    "temporal_style": (0.0, 0.364, 1.0, "semantic"),
    "overall_consistency": (0.0, 0.364, 1.0, "semantic"),
}
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4.0, 1.0


def normalize(dimension: str, raw: float) -> float:
    low, high, _, _ = NORMALIZATION[dimension]
    return (raw - low) / (high - low)


def _group_scores(normalized: dict) -> dict:
    """{quality, semantic, total} from normalised dimension scores: each group VBench's weighted mean over the
    dimensions given (a NaN among them makes the group NaN; a group with none is NaN), Total (4 Q + S) / 5."""
    out = {}
    for group in ("quality", "semantic"):
        dims = [d for d in NORMALIZATION if d in normalized and NORMALIZATION[d][3] == group]
        weights = sum(NORMALIZATION[d][2] for d in dims)
        out[group] = sum(NORMALIZATION[d][2] * normalized[d] for d in dims) / weights if dims else float("nan")
    out["total"] = (QUALITY_WEIGHT * out["quality"] + SEMANTIC_WEIGHT * out["semantic"]) / (
        QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    return out


def vbench_scores(raw: dict) -> dict:
    """raw {dimension: aggregate score in [0, 1]} -> normalised scores plus quality, semantic, total."""
    unknown = set(raw) - set(NORMALIZATION)
    if unknown:
        raise KeyError(f"vbench_scores: unknown dimensions {sorted(unknown)}")
    missing = [d for d in NORMALIZATION if d not in raw or raw[d] is None or math.isnan(raw[d])]
    if missing:
        warnings.warn(f"VBench scores: missing dimensions {missing} are NaN and make their group NaN",
                      stacklevel=2)
    out = {d: float("nan") if d in missing else normalize(d, raw[d]) for d in NORMALIZATION}
    return {**out, **_group_scores(out)}


def vbench_scores_missing_zero(raw: dict) -> dict:
    """Quality / Semantic / Total by VBench's own rule (scripts/cal_final_score.py): a missing dimension's raw
    score is 0, then every dimension is normalised and weighted over all 16 (dynamic_degree 0.5)."""
    filled = {d: raw[d] if d in raw and raw[d] is not None and not math.isnan(raw[d]) else 0.0 for d in NORMALIZATION}
    return _group_scores({d: normalize(d, v) for d, v in filled.items()})


def vbench_scores_present(raw: dict) -> dict:
    """Quality / Semantic / Total from the dimensions present only (VBench's weights renormalised over them):
    for runs that score a subset, e.g. the world suite. A group with no dimension is NaN, and so is Total."""
    return _group_scores({d: normalize(d, v) for d, v in raw.items() if v is not None and not math.isnan(v)})
