"""Synthetic video world: scenes, renderer, caption grammar, prompt suite, and the oracle that reads frames."""

from m4v.world.captions import KINDS, auxiliary_info, caption, prompt_suite, sample_scene
from m4v.world.oracle import FrameReading, motion_of, read_frame, relation
from m4v.world.scene import BACKGROUNDS, COLORS, SHAPES, STYLES, Scene, WorldObject, ground_truth, render

__all__ = ["BACKGROUNDS", "COLORS", "KINDS", "SHAPES", "STYLES", "FrameReading", "Scene", "WorldObject",
           "auxiliary_info", "caption", "ground_truth", "motion_of", "prompt_suite", "read_frame", "relation",
           "render", "sample_scene"]
