"""Semantic VBench dimensions scored with the world's oracle in place of VBench's detectors.

VBench runs GRiT (object class, multiple objects, colour, spatial relationship), Tag2Text (scene) and CLIP
(appearance style) on 16 "middle"-sampled frames; here the oracle of m4v/world reads those frames. The
frame sampling, success rules and aggregation follow VBench; rows carry backbone "world-oracle" and are never
reported as VBench scores. They apply to videos whose prompt entry carries the dimension's auxiliary info
(the world prompt suite, m4v/world/captions.py).
"""

from __future__ import annotations

import numpy as np

from evaluators.registry import Declined, Evaluator, Record, register
from evaluators.video import middle_frame_indices
from m4v.world.oracle import read_frame

BACKBONE = "world-oracle"
N_FRAMES = 16  # VBench samples 16 frames for these dimensions


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
        scores = [self.frame_score(read_frame(f), info) for f in frames]
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

    def frame_score(self, reading, info) -> float:
        return float(info["object"] in _things(reading))


@register
class MultipleObjects(WorldOracleEvaluator):
    """"A and B": a frame succeeds only if both are detected."""

    name = "multiple_objects"

    def frame_score(self, reading, info) -> float:
        return float(all(name in _things(reading) for name in info["object"].split(" and ")))


@register
class Color(WorldOracleEvaluator):
    """Among frames where the object is found, the fraction where it has the prompt's colour; videos where
    it is never found are dropped from the aggregate (VBench)."""

    name = "color"

    def evaluate_video(self, video) -> Record:
        info = self.required_info(video)
        frames = self.sampled_frames(video)
        found = colored = 0
        for frame in frames:
            hits = [o for o in read_frame(frame).objects if o.shape == info["object"]]
            found += bool(hits)
            colored += any(o.color == info["color"] for o in hits)
        score = colored / found if found else float("nan")
        return Record(video.source, self.name, score, self.backbone, len(frames),
                      {"object_frames": found, "color_frames": colored})

    def aggregate(self, records) -> float:
        kept = [r.score for r in records if r.extra["object_frames"] > 0]
        return float(np.mean(kept)) if kept else float("nan")


@register
class SpatialRelationship(WorldOracleEvaluator):
    """VBench's rule on the boxes of object_a / object_b: along the relation's axis, 1 if the boxes barely
    overlap (IoU < 0.1) else 0.1 / IoU; max over pairs. Like VBench, the direction itself is not checked."""

    name = "spatial_relationship"

    def frame_score(self, reading, info) -> float:
        rel = info["spatial_relationship"]
        names = {rel["object_a"], rel["object_b"]}
        boxes = [o.bbox for o in reading.objects if f"{o.color} {o.shape}" in names]
        horizontal = rel["relationship"] in ("to the left of", "to the right of")
        best = 0.0
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                dx = (b[0] + b[2] - a[0] - a[2]) / 2
                dy = (b[1] + b[3] - a[1] - a[3]) / 2
                if (abs(dx) > abs(dy)) if horizontal else (abs(dy) > abs(dx)):
                    iou = _iou(a, b)
                    best = max(best, 1.0 if iou < 0.1 else 0.1 / iou)
        return best


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@register
class SceneDimension(WorldOracleEvaluator):
    """A frame succeeds if the oracle reads the prompt's background."""

    name = "scene"

    def frame_score(self, reading, info) -> float:
        return float(reading.background == info["scene"]["scene"])


@register
class AppearanceStyle(WorldOracleEvaluator):
    """A frame succeeds if the oracle reads the prompt's rendering style."""

    name = "appearance_style"

    def frame_score(self, reading, info) -> float:
        return float(f"{reading.style} style" == info["appearance_style"])
