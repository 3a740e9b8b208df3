"""World-suite checks: the world oracle reads every frame of a video made for a world prompt and each check
compares one property with the prompt's scene. One copy of each rule, used by `eval` on any folder whose
prompt file carries the world entries and by the suites.

They apply to videos whose prompt entry has `auxiliary_info["world"]` (m4v/world/captions.py:prompt_suite)
and decline the others. Scores are per-video fractions of frames (0/1 for motion and still); "found" credits
any match among a frame's detections, so read `world_colour_shape` beside `world_count` (exactly the
prompted number of objects): a model that paints clutter finds the prompted object by luck.
"""

from __future__ import annotations

import numpy as np

from evaluators.registry import Evaluator, Record, register
from m4v.world import Scene, motion_of, read_frame, relation

BACKBONE = "world-oracle"
_READINGS: list = []  # [(frames, readings)] of the last videos read: the checks share one oracle pass per video


def frame_readings(frames: np.ndarray) -> list:
    """The oracle's reading of every frame, computed once per frames array however many checks ask."""
    for cached, readings in _READINGS:
        if cached is frames:
            return readings
    readings = [read_frame(f) for f in frames]
    _READINGS[:] = [(frames, readings)] + _READINGS[:3]
    return readings


def _found(reading, obj, with_colour: bool = True) -> list:
    return [d for d in reading.objects if d.shape == obj.shape and (not with_colour or d.color == obj.color)]


class WorldCheck(Evaluator):
    """A property of the prompt's scene read back per frame; subclasses define `kinds` and `frame_score`."""

    needs = ("frames", "prompt_info")
    group = "world"
    backbone = BACKBONE
    version = "1"
    kinds: tuple | None = None   # world prompt kinds this check applies to (None: every kind)

    def prompt_info(self, video):
        aux = video.aux or {}
        world = (aux.get("auxiliary_info") or {}).get("world")
        if world is None or (self.kinds is not None and aux.get("world_kind") not in self.kinds):
            return None
        return {"scene": Scene.from_dict(world), "kind": aux.get("world_kind")}

    def frame_score(self, reading, scene: Scene, kind: str) -> float:
        raise NotImplementedError

    def evaluate_video(self, video) -> Record:
        info = self.prompt_info(video)
        scores = [self.frame_score(r, info["scene"], info["kind"]) for r in frame_readings(video.frames)]
        return Record(video.source, self.name, float(np.mean(scores)), self.backbone, video.num_frames)


@register
class WorldColourShape(WorldCheck):
    """Frames with the prompt's first object found with its colour and shape (prompts that name a colour)."""

    name = "world_colour_shape"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("multiple_objects", "color", "spatial_relationship", "scene", "dynamic", "static", "style")

    def frame_score(self, reading, scene, kind) -> float:
        return float(bool(_found(reading, scene.objects[0])))


@register
class WorldShape(WorldCheck):
    """Frames with an object of the first object's shape."""

    name = "world_shape"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)

    def frame_score(self, reading, scene, kind) -> float:
        return float(any(d.shape == scene.objects[0].shape for d in reading.objects))


@register
class WorldColour(WorldCheck):
    """Frames with an object of the first object's colour (prompts that name a colour)."""

    name = "world_colour"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = WorldColourShape.kinds

    def frame_score(self, reading, scene, kind) -> float:
        return float(any(d.color == scene.objects[0].color for d in reading.objects))


@register
class WorldCount(WorldCheck):
    """Frames with exactly the prompted number of objects."""

    name = "world_count"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)

    def frame_score(self, reading, scene, kind) -> float:
        return float(len(reading.objects) == len(scene.objects))


@register
class WorldBothObjects(WorldCheck):
    """Two-object prompts: frames with both objects found (colour and shape)."""

    name = "world_both_objects"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("multiple_objects", "spatial_relationship")

    def frame_score(self, reading, scene, kind) -> float:
        return float(all(_found(reading, obj) for obj in scene.objects[:2]))


@register
class WorldRelation(WorldCheck):
    """Relation prompts: frames with both objects found and the first where the prompt puts it."""

    name = "world_relation"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("spatial_relationship",)

    def frame_score(self, reading, scene, kind) -> float:
        a, b = _found(reading, scene.objects[0]), _found(reading, scene.objects[1])
        return float(bool(a and b) and relation(a[0], b[0]) == scene.relation)


@register
class WorldBackground(WorldCheck):
    """Scene prompts: frames whose background reads as the prompt's."""

    name = "world_background"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("scene",)

    def frame_score(self, reading, scene, kind) -> float:
        return float(reading.background == scene.background)


@register
class WorldStyle(WorldCheck):
    """Style prompts: frames whose rendering style reads as the prompt's."""

    name = "world_style"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("style",)

    def frame_score(self, reading, scene, kind) -> float:
        return float(reading.style == scene.style)


class _MotionCheck(WorldCheck):
    """1 if the first object's track (followed by colour over all frames) moves as the prompt says, else 0."""

    def evaluate_video(self, video) -> Record:
        scene = self.prompt_info(video)["scene"]
        first = scene.objects[0]
        seen = motion_of(video.frames, first.color)
        return Record(video.source, self.name, float(seen == first.motion), self.backbone, video.num_frames,
                      {"read": seen, "prompted": first.motion})


@register
class WorldMotion(_MotionCheck):
    """Moving prompts: the direction read from the video is the prompted one (0/1)."""

    name = "world_motion"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("dynamic",)


@register
class WorldStill(_MotionCheck):
    """Still prompts: the object reads as still (0/1)."""

    name = "world_still"
    score_range = (0.0, 1.0)   # a fraction of frames (or 0/1)
    kinds = ("static",)
