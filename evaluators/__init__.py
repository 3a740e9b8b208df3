"""Evaluators: a registry of metrics that see only `Video`s (never the model classes)."""

from evaluators import aesthetic, clip_score, compute, consistency, vbench, world, world_oracle  # noqa: F401,E501
from evaluators.registry import EVALUATORS, Evaluator, Record, get_evaluator, register
from evaluators.video import Video, VideoReadError, read_video, write_video

__all__ = ["EVALUATORS", "Evaluator", "Record", "Video", "VideoReadError", "get_evaluator", "read_video",
           "register", "write_video"]
