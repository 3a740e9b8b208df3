"""Fidelity reward model, degradations, the combined reward's gradient, and the reward-tiny recipe through the loop."""

import csv
import json
import math

import pytest
import torch

from benchmarks.train import train
from m4v.fidelity import DEGRADATIONS, FidelityReward, combined_reward, degrade, degrade_one
from m4v.recipes.clip import world_frames
from m4v.tiny_clip import TINY_CLIP_NAME, build_tiny_clip


@pytest.fixture(scope="module")
def frames():
    return world_frames(0, 0, 4)[0]                                                # (4, 3, 64, 64)


def test_degrade_changes_every_frame_and_is_deterministic(frames):
    a = degrade(frames, torch.Generator().manual_seed(1))
    b = degrade(frames, torch.Generator().manual_seed(1))
    c = degrade(frames, torch.Generator().manual_seed(2))
    assert a.shape == frames.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    assert ((a - frames).abs().flatten(1).mean(1) > 1e-3).all()


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_each_degradation_changes_a_single_frame(frames, kind):
    image = frames[0]
    out = degrade_one(image, kind, torch.Generator().manual_seed(0), image.flip(-1))
    assert out.shape == image.shape and (out - image).abs().mean() > 1e-3


def test_save_and_load_give_identical_scores(tmp_path, frames):
    model = FidelityReward().eval()
    model.save_pretrained(tmp_path)
    loaded = FidelityReward.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(model(frames), loaded(frames))
    assert model(frames).shape == (4,)


def test_combined_reward_reaches_the_frames(frames):
    import open_clip

    clip = build_tiny_clip().eval()
    bundle = (clip, open_clip.get_tokenizer(TINY_CLIP_NAME))
    prompts = ["a red star", "a circle"]
    fidelity = FidelityReward().eval()
    images = frames[:2].clone().requires_grad_()
    reward = combined_reward(images, prompts, bundle, fidelity)
    assert reward.shape == (2,) and torch.isfinite(reward).all() and (reward >= 0).all() and (reward <= 2).all()
    reward.sum().backward()
    assert images.grad.abs().sum() > 0
    videos = frames[:2, :, None].repeat(1, 1, 3, 1, 1).requires_grad_()         # (B, 3, T, H, W)
    per_video = combined_reward(videos, prompts, bundle, fidelity)
    torch.testing.assert_close(per_video.detach(), reward.detach(), atol=1e-5, rtol=1e-5)  # identical frames: same mean
    per_video.sum().backward()
    assert videos.grad.abs().sum() > 0


def test_recipe_trains_logs_saves_and_resumes(tmp_path):
    record = train("reward-tiny", tmp_path / "straight", steps=4, batch=8, progress=False)
    with open(tmp_path / "straight" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert json.loads((tmp_path / "straight" / "training.json").read_text())["model"] == "reward-tiny"
    assert math.isfinite(record["final_metrics"]["pair_accuracy"])
    assert FidelityReward.from_pretrained(tmp_path / "straight")(torch.zeros(1, 3, 64, 64)).shape == (1,)
    train("reward-tiny", tmp_path / "resumed", steps=2, batch=8, progress=False)
    train("reward-tiny", tmp_path / "resumed", steps=4, batch=8, progress=False)
    straight = FidelityReward.from_pretrained(tmp_path / "straight").state_dict()
    resumed = FidelityReward.from_pretrained(tmp_path / "resumed").state_dict()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
