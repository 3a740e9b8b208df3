"""Synthetic world: determinism, captions, prompt suite format, and the oracle's exactness on rendered frames."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m4v.world import (
    BACKGROUNDS,
    COLORS,
    KINDS,
    SHAPES,
    STYLES,
    Scene,
    WorldObject,
    caption,
    ground_truth,
    motion_of,
    prompt_suite,
    read_frame,
    relation,
    render,
    sample_scene,
)


def test_rendering_is_deterministic():
    a = render(sample_scene("dynamic", np.random.default_rng(5)))
    b = render(sample_scene("dynamic", np.random.default_rng(5)))
    assert a.dtype == np.uint8 and a.shape == (16, 64, 64, 3) and np.array_equal(a, b)


@settings(max_examples=120, deadline=None)
@given(shape=st.sampled_from(SHAPES), color=st.sampled_from(list(COLORS)), bg=st.sampled_from(list(BACKGROUNDS)),
       style=st.sampled_from(STYLES), x=st.floats(14, 50), y=st.floats(14, 46), r=st.floats(7, 11))
def test_oracle_reads_single_objects_exactly(shape, color, bg, style, x, y, r):
    scene = Scene((WorldObject(shape, color, x, y, r),), bg, style, n_frames=1)
    reading = read_frame(render(scene)[0])
    assert (reading.background, reading.style) == (bg, style)
    assert [(o.shape, o.color) for o in reading.objects] == [(shape, color)]
    cx, cy = reading.objects[0].center
    if shape in ("square", "circle"):  # symmetric shapes: the centroid is the centre
        assert abs(cx - x) <= 1.0 and abs(cy - y) <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_oracle_confirms_every_caption_kind(kind):
    for seed in range(6):
        scene = sample_scene(kind, np.random.default_rng(seed))
        frames = render(scene)
        truth = ground_truth(scene)
        for t in (0, len(frames) - 1):
            reading = read_frame(frames[t])
            assert sorted((o.shape, o.color) for o in reading.objects) == sorted(
                (o["shape"], o["color"]) for o in truth[t]["objects"])
            assert (reading.background, reading.style) == (scene.background, scene.style)
        if kind == "spatial_relationship":
            reading = read_frame(frames[0])
            first = next(o for o in reading.objects if o.color == scene.objects[0].color)
            second = next(o for o in reading.objects if o.color == scene.objects[1].color)
            assert relation(first, second) == scene.relation
        if kind in ("dynamic", "static"):
            assert motion_of(frames, scene.objects[0].color) == scene.objects[0].motion


@pytest.mark.parametrize("kind", ["multiple_objects", "spatial_relationship"])
def test_larger_objects_still_place_and_read(kind, monkeypatch):
    """A world with other object sizes (the radius constants) still places every pair, whole, apart, readable."""
    import m4v.world.captions as captions

    monkeypatch.setattr(captions, "OBJECT_RADIUS", (14.0, 18.0))
    monkeypatch.setattr(captions, "PAIR_RADIUS", 12.0)
    for seed in range(40):
        scene = sample_scene(kind, np.random.default_rng(seed))
        a, b = scene.objects
        assert a.radius == b.radius == 12.0 and np.hypot(a.x - b.x, a.y - b.y) >= 32
        assert all(o.radius + 2 <= v <= 64 - o.radius - 2 for o in scene.objects for v in (o.x, o.y))
        reading = read_frame(render(scene)[0])
        assert sorted(o.color for o in reading.objects) == sorted((a.color, b.color))
        if kind == "spatial_relationship":
            first = next(o for o in reading.objects if o.color == a.color)
            second = next(o for o in reading.objects if o.color == b.color)
            assert relation(first, second) == scene.relation


def test_caption_grammar():
    o1 = WorldObject("square", "red", 20, 32, 7, "left", 1.5)
    o2 = WorldObject("circle", "blue", 44, 32, 7)
    scene = Scene((o1, o2), "grey", "flat", relation="to the left of")
    assert caption(scene, "dynamic") == "a red square moves left on a grey background"
    assert caption(scene, "multiple_objects") == "a red square and a blue circle"
    assert caption(scene, "spatial_relationship") == "a red square to the left of a blue circle"
    assert caption(scene, "object_class") == "a square"
    assert caption(Scene((o2,), style="shadow"), "style") == "a blue circle, shadow style"
    orange = WorldObject("star", "orange", 20, 32, 7)
    pair = Scene((orange, o2), relation="above")
    assert caption(pair, "spatial_relationship") == "an orange star above a blue circle"


def test_prompt_suite_is_vbench_full_info(tmp_path):
    suite = prompt_suite(n_per_kind=3, seed=1)
    assert len(suite) == 3 * len(KINDS)
    path = tmp_path / "full_info.json"
    path.write_text(json.dumps(suite))
    loaded = json.loads(path.read_text())
    assert all({"prompt_en", "dimension", "auxiliary_info"} <= set(e) for e in loaded)
    color = next(e for e in loaded if e["world_kind"] == "color")
    assert color["auxiliary_info"]["color"]["color"] in COLORS
    assert prompt_suite(n_per_kind=3, seed=1) == suite           # deterministic
    # The stored scene regenerates exactly from its seed.
    entry = loaded[5]
    again = sample_scene(entry["world_kind"], np.random.default_rng(entry["world_seed"]))
    assert again == Scene.from_dict(entry["auxiliary_info"]["world"])


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        sample_scene("weather", np.random.default_rng(0))
    with pytest.raises(ValueError, match="style"):
        render(Scene((WorldObject("square", "red", 30, 30, 8),), style="watercolour"))


def test_shape_measures_match_hand_computed_values():
    """fill = area / bounding box; solidity = area / convex hull of the pixels' corners."""
    from m4v.world.oracle import shape_from_measures, shape_measures

    square = np.ones((10, 10), bool)
    assert shape_measures(square) == pytest.approx((1.0, 1.0)) and shape_from_measures(1.0, 1.0) == "square"
    ell = square.copy()
    ell[5:, 5:] = False                      # area 75; hull cuts the corner: 100 - 5 * 5 / 2 = 87.5
    fill, solidity = shape_measures(ell)
    assert fill == pytest.approx(0.75) and solidity == pytest.approx(75 / 87.5)
