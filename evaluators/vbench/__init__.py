"""VBench dimensions (one module each) and VBench's scoring. Importing registers the evaluators."""

from evaluators.vbench import (  # noqa: F401
    dynamic_degree,
    human_action,
    imaging_quality,
    motion_smoothness,
    overall_consistency,
    temporal_flickering,
    temporal_style,
)
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores  # noqa: F401
