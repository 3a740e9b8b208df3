"""VBench dimensions (one module each) and VBench's scoring. Importing registers the evaluators."""

from evaluators.vbench import dynamic_degree, motion_smoothness, temporal_flickering  # noqa: F401
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores  # noqa: F401
