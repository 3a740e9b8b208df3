"""VBench overall_consistency: video-text cosine on the overall-consistency prompts (ViCLIP; substitute in
video_text.py)."""

from evaluators.registry import register
from evaluators.vbench.video_text import VideoTextSimilarity


@register
class OverallConsistency(VideoTextSimilarity):
    name = "overall_consistency"
    score_range = (-1.0, 1.0)   # a cosine
