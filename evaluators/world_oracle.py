"""Semantic VBench dimensions scored with the world's oracle in place of VBench's detectors, and
appearance_style with CLIP as VBench scores it.

VBench runs GRiT (object class, multiple objects, colour, spatial relationship) and Tag2Text (scene) on 16
"middle"-sampled frames; here the oracle of m4v/world reads those frames, and VBench's own rule runs on top of
the reading: the relation string parsed as VBench parses it, the scene's every word looked up in a caption.
Frame sampling and aggregation follow VBench; rows carry backbone "world-oracle" and are never reported as
VBench scores. appearance_style is VBench's CLIP rule (raw cosine of every frame with the style phrase). They
apply to videos whose prompt entry carries the dimension's auxiliary info (a full_info suite, or the world
suite of m4v/world/captions.py).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from evaluators.registry import Declined, Evaluator, Record, register
from evaluators.video import middle_frame_indices
from m4v.world.oracle import read_frame

BACKBONE = "world-oracle"
N_FRAMES = 16  # VBench samples 16 frames for these dimensions


class _ReadingMemo:
    """The oracle's reading of a frame, computed once for all the dimensions that read it (VBench runs its
    detector again per dimension); keyed by frame content."""

    memo_enabled = True
    capacity = 4096

    def __init__(self):
        self.store = OrderedDict()

    def read(self, frame: np.ndarray):
        if not self.memo_enabled:
            return read_frame(frame)
        from evaluators.backbone_loading import frame_key

        key = frame_key(frame)
        if key not in self.store:
            self.store[key] = read_frame(frame)
            if len(self.store) > self.capacity:
                self.store.popitem(last=False)
        return self.store[key]


READINGS = _ReadingMemo()


class WorldOracleEvaluator(Evaluator):
    """Per frame success from the oracle's reading; subclasses define the rule and the aggregation."""

    backbone = BACKBONE
    needs = ("frames", "prompt_info")
    version = "1"

    def required_info(self, video) -> dict:
        info = self.prompt_info(video)
        if info is None:
            raise Declined(f"{video.source}: {self.name} needs auxiliary_info['{self.name}'] from a prompt suite")
        return info

    def sampled_frames(self, video):
        return video.frames[middle_frame_indices(video.num_frames, N_FRAMES)]

    def frame_score(self, reading, info) -> float:
        raise NotImplementedError

    def evaluate_video(self, video) -> Record:
        info = self.required_info(video)
        frames = self.sampled_frames(video)
        scores = [self.frame_score(READINGS.read(f), info) for f in frames]
        return Record(video.source, self.name, float(np.mean(scores)), self.backbone, len(frames),
                      {"frame_results": scores, "success_frame_count": float(np.sum(scores)),
                       "frame_count": len(scores)})

    def aggregate(self, records) -> float:
        """Frame-weighted (VBench: sum of successes / sum of frames)."""
        frames = sum(r.extra["frame_count"] for r in records)
        return sum(r.extra["success_frame_count"] for r in records) / frames if frames else float("nan")


def _things(reading) -> set:
    return {o.shape for o in reading.objects}


@register
class ObjectClass(WorldOracleEvaluator):
    """A frame succeeds if the prompt's object class is among the detected shapes."""

    name = "object_class"
    score_range = (0.0, 1.0)

    def frame_score(self, reading, info) -> float:
        return float(info["object"] in _things(reading))


@register
class MultipleObjects(WorldOracleEvaluator):
    """"A and B": a frame succeeds only if both are detected."""

    name = "multiple_objects"
    score_range = (0.0, 1.0)

    def frame_score(self, reading, info) -> float:
        return float(all(name in _things(reading) for name in info["object"].split(" and ")))


@register
class Color(WorldOracleEvaluator):
    """Among frames where the object is found, the fraction where it has the prompt's colour; videos where
    it is never found are dropped from the aggregate (VBench)."""

    name = "color"
    score_range = (0.0, 1.0)
    version = "2"

    def evaluate_video(self, video) -> Record:
        info = self.required_info(video)
        # VBench's color entries carry only the colour; the object is the prompt less articles and colour
        target = info.get("object") or vbench_color_object(video.prompt, info["color"])
        frames = self.sampled_frames(video)
        found = colored = 0
        for frame in frames:
            hits = [o for o in READINGS.read(frame).objects if o.shape == target]
            found += bool(hits)
            colored += any(o.color == info["color"] for o in hits)
        if not found:   # VBench leaves such a video out of color's average: not a failure
            raise Declined(f"{video.source}: the object {target!r} is never detected (VBench drops the video from "
                           "color's average)", extra={"object_frames": 0})
        return Record(video.source, self.name, colored / found, self.backbone, len(frames),
                      {"object_frames": found, "color_frames": colored, "object": target})

    def aggregate(self, records) -> float:
        kept = [r.score for r in records if r.extra["object_frames"] > 0]
        return float(np.mean(kept)) if kept else float("nan")


def vbench_color_object(prompt: str, color: str) -> str:
    """The object of a VBench color prompt, string op for string op as vbench/color.py derives it."""
    return prompt.replace("a ", "").replace("an ", "").replace(color, "").strip()


# The world suite's phrasing -> VBench's relation strings (VBench_full_info.json uses only the latter).
WORLD_RELATIONS = {"to the left of": "on the left of", "to the right of": "on the right of",
                   "above": "on the top of", "below": "on the bottom of"}


def relation_axis(relationship: str) -> str | None:
    """VBench's get_position_score test, `locality in 'on the right of' or locality in 'on the left of'`
    (a substring test): "horizontal", "vertical", or None (VBench then scores 0)."""
    relationship = WORLD_RELATIONS.get(relationship, relationship)
    if relationship in "on the right of" or relationship in "on the left of":
        return "horizontal"
    if relationship in "on the bottom of" or relationship in "on the top of":
        return "vertical"
    return None


def position_score(axis: str | None, a, b, iou_threshold: float = 0.1) -> float:
    """VBench's get_position_score on boxes (x0, y0, x1, y1): along the axis, 1 if IoU < 0.1 else 0.1 / IoU."""
    dx = (b[0] + b[2] - a[0] - a[2]) / 2
    dy = (b[1] + b[3] - a[1] - a[3]) / 2
    along = abs(dx) > abs(dy) if axis == "horizontal" else abs(dy) > abs(dx) if axis == "vertical" else False
    if not along:
        return 0.0
    iou = _iou(a, b)
    return 1.0 if iou < iou_threshold else iou_threshold / iou


@register
class SpatialRelationship(WorldOracleEvaluator):
    """VBench's rule on the boxes of object_a / object_b: along the relation's axis, 1 if the boxes barely
    overlap (IoU < 0.1) else 0.1 / IoU; max over pairs. Like VBench, the direction itself is not checked."""

    name = "spatial_relationship"
    score_range = (0.0, 1.0)
    version = "2"

    def frame_score(self, reading, info) -> float:
        rel = info["spatial_relationship"]
        names = {rel["object_a"], rel["object_b"]}
        boxes = [o.bbox for o in reading.objects if f"{o.color} {o.shape}" in names]
        axis = relation_axis(rel["relationship"])
        scores = [position_score(axis, boxes[i], boxes[j]) for i in range(len(boxes))
                  for j in range(i + 1, len(boxes))]
        return max([0.0] + scores)


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def oracle_caption(reading) -> str:
    """A caption of the oracle's reading, standing in for Tag2Text's: the objects, then the background."""
    things = " and ".join(f"a {o.color} {o.shape}" for o in reading.objects) or "nothing"
    return f"a picture of {things} on a {reading.background} background, {reading.style} style"


def scene_matches(scene: str, caption: str) -> bool:
    """VBench's scene check_generate: every space-separated word of the scene name is a substring of the caption."""
    return all(word in caption for word in scene.split(" "))


@register
class SceneDimension(WorldOracleEvaluator):
    """A frame succeeds if every word of the scene name is in the caption of the oracle's reading (VBench)."""

    name = "scene"
    score_range = (0.0, 1.0)
    version = "2"

    def frame_score(self, reading, info) -> float:
        return float(scene_matches(info["scene"]["scene"], oracle_caption(reading)))


@register
class AppearanceStyle(WorldOracleEvaluator):
    """VBench appearance_style: per frame the raw cosine of the CLIP image embedding (every frame, PIL-path
    clip_transform_Image) with the style phrase; per video the mean; aggregate the mean over all frames."""

    name = "appearance_style"
    score_range = (-1.0, 1.0)   # a raw cosine
    version = "2"
    backbones = ("clip",)
    faithful_backbone = "clip:ViT-B-32-quickgelu@"

    def __init__(self, clip):
        Evaluator.__init__(self, clip=clip)

    @torch.no_grad()
    def evaluate_video(self, video) -> Record:
        style = self.required_info(video)["appearance_style"]
        images = self.clip.encode_frames(video.frames, path="pil")                  # (T, E)
        per_frame = (images @ self.clip.encode_text([style]).T).squeeze(1)           # (T,) raw cosine
        return Record(video.source, self.name, float(per_frame.mean()), self.backbone, video.num_frames,
                      {"frame_results": per_frame.tolist(), "success_frame_count": float(per_frame.sum()),
                       "frame_count": len(per_frame)})
