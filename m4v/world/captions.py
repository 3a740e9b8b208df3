"""Scene sampling per prompt kind, the caption grammar, and the world's prompt suite (VBench full_info format).

Each kind is the analogue of a VBench dimension: object class, multiple objects, colour, spatial
relationship, scene (background), dynamic vs static, and appearance style (rendering style).
"""

from __future__ import annotations

import numpy as np

from m4v.world.scene import BACKGROUNDS, COLORS, SHAPES, STYLES, Scene, WorldObject

KINDS = ("object_class", "multiple_objects", "color", "spatial_relationship", "scene", "dynamic", "static",
         "style")
RELATIONS = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, -1), "below": (0, 1)}
# VBench dimensions each kind's prompts are scored on, as VBench's own prompt sets share them out: subject
# prompts (here: moving objects) serve dynamic degree, motion smoothness and subject consistency; still ones
# temporal flickering; scene ones background consistency; style ones appearance and temporal style. VBench's
# "overall" prompts (aesthetic, imaging quality, overall consistency) are every kind here: the world has no
# separate set of free-form prompts.
_OVERALL = ["aesthetic_quality", "imaging_quality", "overall_consistency"]
KIND_DIMENSIONS = {
    "object_class": ["object_class", *_OVERALL], "multiple_objects": ["multiple_objects", *_OVERALL],
    "color": ["color", *_OVERALL], "spatial_relationship": ["spatial_relationship", *_OVERALL],
    "scene": ["scene", "background_consistency", *_OVERALL],
    "dynamic": ["dynamic_degree", "motion_smoothness", "subject_consistency", *_OVERALL],
    "static": ["temporal_flickering", *_OVERALL], "style": ["appearance_style", "temporal_style", *_OVERALL],
}
SPEED = 1.5  # px per frame for moving objects
OBJECT_RADIUS = (12.0, 16.0)  # px, uniform, for a scene's only object
PAIR_RADIUS = 10.0  # px, both objects of a two-object scene


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _object(rng, size, radius=None, color=None, shape=None) -> WorldObject:
    r = radius if radius is not None else float(rng.uniform(*OBJECT_RADIUS))
    margin = max(12.0, r + 2)  # the whole shape on the canvas (a shadow may be clipped)
    return WorldObject(shape or _pick(rng, SHAPES), color or _pick(rng, list(COLORS)),
                       float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin)), r)


def sample_scene(kind: str, rng: np.random.Generator, n_frames: int = 16, size: int = 64) -> Scene:
    """A random scene whose caption of `kind` is true in every frame."""
    if kind not in KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; known: {KINDS}")
    background = _pick(rng, list(BACKGROUNDS))
    style = _pick(rng, STYLES) if kind == "style" else "flat"
    if kind in ("multiple_objects", "spatial_relationship"):
        return _two_objects(kind, rng, background, n_frames, size)
    obj = _object(rng, size)
    if kind == "dynamic":
        motion = _pick(rng, ["left", "right", "up", "down"])
        travel = SPEED * (n_frames - 1)
        lo, hi = obj.radius + 2, size - obj.radius - 2
        start = {"left": (hi, None), "right": (lo, None), "up": (None, hi), "down": (None, lo)}[motion]
        x = start[0] if start[0] is not None else obj.x
        y = start[1] if start[1] is not None else obj.y
        if travel > hi - lo:
            raise ValueError(f"{n_frames} frames at {SPEED} px/frame do not fit a {size} px canvas")
        obj = WorldObject(obj.shape, obj.color, x, y, obj.radius, motion, SPEED)
    return Scene((obj,), background, style, n_frames, size, size)


def _two_objects(kind, rng, background, n_frames, size) -> Scene:
    for _ in range(100):
        first = _object(rng, size, radius=PAIR_RADIUS)
        second_color = _pick(rng, [c for c in COLORS if c != first.color])
        for _ in range(10_000):  # 1 in 10^4 scenes needs more than 100 draws; the first success is kept
            second = _object(rng, size, radius=PAIR_RADIUS, color=second_color)
            relation = _placement(kind, second.x - first.x, second.y - first.y)
            if relation is not None:
                return Scene((first, second), background, "flat", n_frames, size, size, relation)
        # No room around this first object (possible only when PAIR_RADIUS is large): draw it again.
    raise RuntimeError("could not place two objects")


def _placement(kind: str, dx: float, dy: float) -> str | None:
    """The relation caption for a second object at (dx, dy) from the first ("" when the kind needs none), or
    None where the pair does not fit the kind."""
    if np.hypot(dx, dy) < 2 * PAIR_RADIUS + 8:  # keep them (and their shadows) apart
        return None
    if kind == "multiple_objects":
        return ""
    # The first object is `relation` the second along the dominant axis (VBench's |dx| > |dy| rule).
    if abs(dx) > abs(dy) + 4:
        return "to the left of" if dx > 0 else "to the right of"
    if abs(dy) > abs(dx) + 4:
        return "above" if dy > 0 else "below"
    return None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _thing(o: WorldObject) -> str:
    return f"{_article(o.color)} {o.color} {o.shape}"


def caption(scene: Scene, kind: str) -> str:
    """The grammar: one sentence per kind."""
    o = scene.objects[0]
    thing = _thing(o)
    if kind == "object_class":
        return f"a {o.shape}"
    if kind == "color":
        return thing
    if kind == "multiple_objects":
        o2 = scene.objects[1]
        return f"{thing} and {_thing(o2)}"
    if kind == "spatial_relationship":
        o2 = scene.objects[1]
        return f"{thing} {scene.relation} {_thing(o2)}"
    if kind == "scene":
        return f"{thing} on a {scene.background} background"
    if kind == "dynamic":
        return f"{thing} moves {o.motion} on a {scene.background} background"
    if kind == "static":
        return f"{thing} stays still"
    if kind == "style":
        return f"{thing}, {scene.style} style"
    raise ValueError(f"unknown prompt kind {kind!r}")


def auxiliary_info(scene: Scene, kind: str) -> dict:
    """VBench-style auxiliary info for the kind, plus the whole scene under "world" for the oracle."""
    o = scene.objects[0]
    info = {"world": scene.to_dict()}
    if kind == "object_class":
        info["object_class"] = {"object": o.shape}
    elif kind == "color":
        info["color"] = {"color": o.color, "object": o.shape}
    elif kind == "multiple_objects":
        info["multiple_objects"] = {"object": f"{o.shape} and {scene.objects[1].shape}"}
    elif kind == "spatial_relationship":
        o2 = scene.objects[1]
        info["spatial_relationship"] = {"spatial_relationship": {
            "object_a": f"{o.color} {o.shape}", "object_b": f"{o2.color} {o2.shape}", "relationship": scene.relation}}
    elif kind == "scene":
        info["scene"] = {"scene": {"scene": scene.background}}
    elif kind == "style":
        info["appearance_style"] = {"appearance_style": f"{scene.style} style"}
    elif kind in ("dynamic", "static"):
        info["motion"] = {"object": f"{o.color} {o.shape}", "motion": o.motion}
    return info


def prompt_suite(n_per_kind: int = 10, seed: int = 0, n_frames: int = 16, size: int = 64) -> list[dict]:
    """Entries in VBench's full_info format: prompt_en, dimension, auxiliary_info (+ world kind and seed)."""
    entries = []
    for k, kind in enumerate(KINDS):
        for i in range(n_per_kind):
            scene_seed = seed * 1_000_003 + k * 10_007 + i
            scene = sample_scene(kind, np.random.default_rng(scene_seed), n_frames, size)
            entries.append({"prompt_en": caption(scene, kind), "dimension": KIND_DIMENSIONS[kind],
                            "auxiliary_info": auxiliary_info(scene, kind), "world_kind": kind,
                            "world_seed": scene_seed})
    return entries
