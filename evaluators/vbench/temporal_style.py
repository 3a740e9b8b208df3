"""VBench temporal_style: video-text cosine on the temporal-style prompts (ViCLIP; substitute in video_text.py)."""

from evaluators.registry import register
from evaluators.vbench.video_text import VideoTextSimilarity


@register
class TemporalStyle(VideoTextSimilarity):
    name = "temporal_style"
    score_range = (-1.0, 1.0)   # a cosine
