"""Tiny CLIP: open_clip round trip, the backbone spec, CLIP score, and the clip-tiny recipe through the loop."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from benchmarks.train import train
from m4v.recipes.clip import contrastive_loss, world_frames
from m4v.tiny_clip import (
    TINY_CLIP_NAME,
    build_tiny_clip,
    clip_score,
    load_tiny_clip,
    register_tiny_clip,
    save_tiny_clip,
)

PROMPTS = ["a red star", "a blue circle on a sand background", "a green square to the left of a white triangle"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build_tiny_clip(seed=3)
    out = tmp_path_factory.mktemp("tiny-clip")
    path = save_tiny_clip(model, out)
    return model, out, path


def test_register_is_idempotent():
    import open_clip

    assert register_tiny_clip() == register_tiny_clip() == TINY_CLIP_NAME
    assert open_clip.list_models().count(TINY_CLIP_NAME) == 1
    assert open_clip.get_tokenizer(TINY_CLIP_NAME).context_length == 16


def test_registration_leaves_no_directory_behind(tmp_path):
    """The config file open_clip reads lives in a private temp dir for the process's lifetime only."""
    import os
    import subprocess
    import sys

    code = ("import m4v.tiny_clip as t, open_clip; t.register_tiny_clip(); "
            "assert t.TINY_CLIP_NAME in open_clip.list_models(); print(t._registered_dir)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    registered = out.stdout.strip().splitlines()[-1]
    assert registered.startswith(str(tmp_path)) and not list(tmp_path.glob("m4v-tiny-clip-*"))


def test_round_trip_through_open_clip_gives_identical_outputs(saved):
    import open_clip

    model, out, path = saved
    # the file is float16: the reference is the original with its weights rounded the same way
    reference = build_tiny_clip(seed=3)
    reference.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    reference.eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    tokens = open_clip.get_tokenizer(TINY_CLIP_NAME)(PROMPTS)
    loaded, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP_NAME, pretrained=str(path))
    from_dir, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")  # no registration needed
    for other in (loaded.eval(), from_dir.eval(), load_tiny_clip(out)[0]):
        with torch.no_grad():
            assert torch.equal(other.encode_image(images), reference.encode_image(images))
            assert torch.equal(other.encode_text(tokens), reference.encode_text(tokens))
    assert preprocess.transforms[0].size == 64


def test_backbone_spec_accepts_the_tiny_clip(saved):
    from evaluators.backbones import ClipBackbone, parse_backbone

    _, _, path = saved
    backbone = ClipBackbone(parse_backbone(f"clip={TINY_CLIP_NAME}:{path}"))
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    assert backbone.encode_frames(frames).shape == (3, 64)
    assert backbone.encode_text(PROMPTS).shape == (3, 64)


def test_clip_score_is_torchmetrics_formula_and_differentiable(saved):
    model, _, _ = saved
    import open_clip

    tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)
    model.eval()
    images = (torch.rand(3, 3, 64, 64) * 2 - 1).requires_grad_()
    score = clip_score(model, tokenizer, images, PROMPTS)
    mean = torch.tensor(model.visual.image_mean)[:, None, None]
    std = torch.tensor(model.visual.image_std)[:, None, None]
    with torch.no_grad():
        image_features = model.encode_image(((images + 1) / 2 - mean) / std)
        text_features = model.encode_text(tokenizer(PROMPTS))
        cos = torch.nn.functional.cosine_similarity(image_features, text_features, dim=-1)
    torch.testing.assert_close(score.detach(), 100 * cos.clamp(min=0), atol=1e-4, rtol=1e-5)
    score.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_duplicate_captions_share_the_target():
    features = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    # frames 0 and 2 both say "a star": swapping their texts must not change the loss
    captions = ["a star", "a red circle", "a star"]
    loss = contrastive_loss(features, features, torch.tensor(10.0), captions)
    swapped = contrastive_loss(features, features[[2, 1, 0]], torch.tensor(10.0), captions)
    torch.testing.assert_close(loss, swapped)


def test_world_frames_are_deterministic_images_with_captions():
    a, captions = world_frames(0, 5, 4)
    b, _ = world_frames(0, 5, 4)
    assert a.shape == (4, 3, 64, 64) and len(captions) == 4
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1


def test_recipe_trains_logs_and_saves(tmp_path):
    record = train("clip-tiny", tmp_path, steps=3, batch=8, progress=False)
    with open(tmp_path / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert json.loads((tmp_path / "training.json").read_text())["model"] == "clip-tiny"
    assert math.isfinite(record["final_metrics"]["loss"])
    model, _, tokenizer = load_tiny_clip(tmp_path)
    assert model.encode_text(tokenizer(PROMPTS)).shape == (3, 64)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    train("clip-tiny", tmp_path / "straight", steps=4, batch=8, progress=False)
    train("clip-tiny", tmp_path / "resumed", steps=2, batch=8, progress=False)
    train("clip-tiny", tmp_path / "resumed", steps=4, batch=8, progress=False)
    straight = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)["recipe"]["module.clip"]
    resumed = torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)["recipe"]["module.clip"]
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
