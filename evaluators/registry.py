"""Evaluator registry and the per-video record every evaluator returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Record:
    """One score of one video on one dimension; everything downstream is a DataFrame of these."""

    video: str
    dimension: str
    score: float
    backbone: str
    n_frames: int
    extra: dict = field(default_factory=dict)


class Evaluator:
    """name, version, needs; evaluate(videos) -> records; aggregate(records) -> float."""

    name: str = ""
    version: str = "1"
    needs: tuple = ("frames",)
    backbone: str = "none"

    def applies(self, video) -> bool:
        """Whether this video is scored on this dimension (e.g. only prompts written for it)."""
        return True

    def evaluate_video(self, video) -> Record:
        raise NotImplementedError

    def evaluate(self, videos) -> list[Record]:
        return [self.evaluate_video(v) for v in videos]

    def aggregate(self, records: list[Record]) -> float:
        """Mean over videos unless the dimension defines another weighting."""
        scores = [float(r.score) for r in records]
        return float(np.mean(scores)) if scores else float("nan")


EVALUATORS: dict[str, type[Evaluator]] = {}


def register(cls: type[Evaluator]) -> type[Evaluator]:
    if not cls.name or cls.name in EVALUATORS:
        raise ValueError(f"evaluator {cls.__name__}: missing or duplicate name {cls.name!r}")
    EVALUATORS[cls.name] = cls
    return cls


def get_evaluator(name: str, **kwargs) -> Evaluator:
    if name not in EVALUATORS:
        raise KeyError(f"unknown evaluator {name!r}; available: {sorted(EVALUATORS)}")
    return EVALUATORS[name](**kwargs)
