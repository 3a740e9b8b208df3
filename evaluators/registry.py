"""Evaluator registry: evaluators that describe themselves, and the per-video record every one returns.

An evaluator says what it needs from a video (`needs`), which backbone kinds it is built with (`backbones`),
which videos it scores (`applies`), whether higher is better, its version, and which backbone makes it
VBench-faithful (`faithful_backbone`). Runners read only this metadata: nothing outside this package knows
which evaluator takes which backbone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# What a video can carry; an evaluator lists the ones it reads in `needs`.
VIDEO_INPUTS = ("frames", "prompt", "prompt_info", "generation")
# VBench refuses these in custom_input mode, i.e. for videos whose prompt entry names no dimensions
# (vbench/__init__.py, VBench.check_dimension_requires_extra_info): they need a prompt suite's auxiliary_info.
CUSTOM_INPUT_UNSUPPORTED = frozenset({"object_class", "multiple_objects", "scene", "appearance_style", "color",
                                      "spatial_relationship"})


# A per-video score's range (`Evaluator.score_range`): a score outside it is a damaged or tampered number, refused
# wherever scores are read (the cache, compare, report). ANY_FINITE: the metric has no bound (a learned head).
ANY_FINITE = (-math.inf, math.inf)
RANGE_SLACK = 1e-6   # float rounding: a cosine of 1.0000000002 is 1


def score_problem(dimension: str, score) -> str | None:
    """Why `score` cannot be a per-video score of `dimension` (not a finite number, or outside its evaluator's
    declared range), or None; an unknown dimension is only checked for being finite."""
    if isinstance(score, bool) or not isinstance(score, (int, float, np.floating, np.integer)) \
            or not math.isfinite(score):
        return f"score {score!r:.40} is not a finite number"
    cls = EVALUATORS.get(dimension)
    low, high = cls.score_range if cls is not None else ANY_FINITE
    slack = RANGE_SLACK * max(1.0, abs(low) if math.isfinite(low) else 1.0, abs(high) if math.isfinite(high) else 1.0)
    if score < low - slack or score > high + slack:
        return f"score {score:.6g} is outside {dimension}'s range [{low:g}, {high:g}]"
    return None


@dataclass
class Record:
    """One score of one video on one dimension; everything downstream is a DataFrame of these."""

    video: str
    dimension: str
    score: float
    backbone: str
    n_frames: int
    extra: dict = field(default_factory=dict)


class Declined(Exception):
    """Raised by `evaluate_video` when a video cannot be scored on this dimension (too few frames, no prompt
    information, dropped by a filter...): the runner records the reason, never a number. `extra` is what was
    computed on the way (e.g. the static filter's decision); `cacheable=False` when the decision depends on other
    videos of the run (a quota), so it is never read back for another run."""

    def __init__(self, reason: str, extra: dict | None = None, cacheable: bool = True):
        super().__init__(reason)
        self.extra, self.cacheable = extra or {}, cacheable


class Evaluator:
    """Self-describing metric: metadata below; evaluate_video(video) -> Record; aggregate(records) -> float."""

    name: str = ""
    version: str = "1"
    needs: tuple = ("frames",)        # subset of VIDEO_INPUTS
    backbones: tuple = ()             # backbone kinds passed to __init__ as keyword arguments, e.g. ("clip",)
    optional_backbones: tuple = ()    # kinds used when at hand (e.g. "raft"), else a substitute inside
    higher_is_better: bool = True
    score_range: tuple = ANY_FINITE   # (low, high) of a per-video score; subclasses declare theirs
    # VBench-faithful when weight-free ("none"), or when the backbone label starts with this prefix; None: never.
    faithful_backbone: str | None = None
    group: str = "vbench"             # vbench | world | clip | compute: how reports group the columns
    backbone: str = "none"            # label of the backbone(s) actually used (set by __init__)

    def __init__(self, **backbones):
        missing = [kind for kind in self.backbones if backbones.get(kind) is None]
        if missing:
            raise ValueError(f"{self.name} needs backbone(s) {missing}")
        for kind in self.backbones + self.optional_backbones:
            setattr(self, kind, backbones.get(kind))
        labels = [backbones[kind].spec.label for kind in self.backbones if hasattr(backbones[kind], "spec")]
        if labels:
            self.backbone = "+".join(labels)

    @classmethod
    def exact_with(cls, backbone_label: str) -> bool:
        """Whether a row with this backbone label ran VBench's algorithm with VBench's backbone architecture
        (whatever its weights)."""
        prefix = cls.faithful_backbone
        return prefix is not None and (prefix == "none" or str(backbone_label).startswith(prefix))

    @property
    def algorithm_faithful(self) -> bool:
        """Whether this instance runs VBench's algorithm with VBench's backbone architecture (whatever its
        weights)."""
        return self.exact_with(self.backbone)

    def used_backbones(self) -> list:
        """The loaded backbones this instance computes with (an evaluator choosing among several overrides it)."""
        return [b for b in (getattr(self, kind, None) for kind in self.backbones + self.optional_backbones)
                if b is not None]

    @property
    def weights(self) -> str:
        """What its backbones' weight files are (evaluators/vbench_cache.py verify_weights): "none" (weight-free),
        "verified" (every file is the published checkpoint, by its hash), else the worst of "mismatch" (a
        published name with another hash), "random-init" (no file) and "unverified" (no published hash to check)."""
        from evaluators.vbench_cache import verify_weights

        specs = [s for s in (getattr(b, "spec", None) for b in self.used_backbones()) if s is not None]
        statuses = {verify_weights(s.weights).status if s.weights else "random-init" for s in specs}
        if not statuses:
            return "none"
        for worst in ("mismatch", "random-init", "unverified"):
            if worst in statuses:
                return worst
        return "verified"

    @property
    def faithful(self) -> bool:
        """Whether this instance computes VBench's own number: its algorithm and backbone, and the published
        weights (verified by hash; random or unverifiable weights are never faithful)."""
        if not self.algorithm_faithful:
            return False
        return self.faithful_backbone == "none" or self.weights == "verified"

    def applies(self, video) -> bool:
        """Whether this video is scored on this dimension: it carries what `needs` lists, and, where the
        prompt entry names its VBench dimensions (a full_info `dimension` list), this one is among them."""
        aux = video.aux or {}
        if "prompt" in self.needs and not video.prompt:
            return False
        if "generation" in self.needs and "generation" not in aux:
            return False
        if "prompt_info" in self.needs and self.prompt_info(video) is None:
            return False
        tags = aux.get("dimension")
        if self.group == "vbench" and tags is not None:
            return self.name in tags
        if self.group == "vbench" and self.name in CUSTOM_INPUT_UNSUPPORTED:
            return False   # custom input (no suite tags): VBench refuses these dimensions
        return True

    def prompt_info(self, video):
        """This dimension's entry of the prompt's auxiliary_info (VBench full_info layout), or None."""
        return ((video.aux or {}).get("auxiliary_info") or {}).get(self.name)

    def evaluate_video(self, video) -> Record:
        raise NotImplementedError

    def observe(self, video, row: dict) -> None:
        """Sees this evaluator's row of every video, computed or read from the cache, in run order: an evaluator
        whose decision depends on earlier videos (temporal_flickering's quota) keeps that state here, so a
        resumed run decides as an uninterrupted one."""

    @classmethod
    def finalize(cls, rows: list[dict]) -> list[dict]:
        """A run-level rule over this dimension's rows of every model and rank, applied once after gathering
        (so the table does not depend on how the work was split); identity unless the dimension has one."""
        return rows

    def evaluate(self, videos) -> list[Record]:
        return [self.evaluate_video(v) for v in videos]

    def aggregate(self, records: list[Record]) -> float:
        """Mean over videos unless the dimension defines another weighting."""
        scores = [float(r.score) for r in records]
        return float(np.mean(scores)) if scores else float("nan")

    @classmethod
    def describe(cls) -> dict:
        """The metadata a runner or a report reads."""
        return {"name": cls.name, "version": cls.version, "needs": list(cls.needs), "backbones": list(cls.backbones),
                "higher_is_better": cls.higher_is_better, "faithful_backbone": cls.faithful_backbone,
                "group": cls.group, "doc": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""}


EVALUATORS: dict[str, type[Evaluator]] = {}


def register(cls: type[Evaluator]) -> type[Evaluator]:
    if not cls.name or cls.name in EVALUATORS:
        raise ValueError(f"evaluator {cls.__name__}: missing or duplicate name {cls.name!r}")
    unknown = set(cls.needs) - set(VIDEO_INPUTS)
    if unknown:
        raise ValueError(f"evaluator {cls.name}: unknown needs {sorted(unknown)}; known: {VIDEO_INPUTS}")
    EVALUATORS[cls.name] = cls
    return cls


def get_evaluator(name: str, **backbones) -> Evaluator:
    if name not in EVALUATORS:
        raise KeyError(f"unknown evaluator {name!r}; available: {sorted(EVALUATORS)}")
    return EVALUATORS[name](**backbones)


def build_evaluator(name: str, loaded_backbones: dict) -> Evaluator:
    """The evaluator built with the backbones it declares, picked from {kind: loaded backbone}."""
    cls = EVALUATORS[name]
    return cls(**{kind: loaded_backbones.get(kind) for kind in cls.backbones + cls.optional_backbones})


def runnable(loaded_backbones: dict) -> list[str]:
    """Names of the evaluators whose every backbone kind is at hand."""
    return [name for name, cls in EVALUATORS.items() if all(loaded_backbones.get(k) is not None for k in cls.backbones)]
