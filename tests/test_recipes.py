"""Training loop and recipes: world data determinism, resume equals an uninterrupted run, the denoiser's
latent cache, VAE checkpoints with their normalisation, and the world-quality oracle on true renders."""

import csv
import json

import numpy as np
import pytest
import torch

from benchmarks.train import train
from benchmarks.world_quality import score_video
from m4v.generate import latent_frames_for
from m4v.recipes import get_recipe, weights_path
from m4v.recipes.text import Recipe as TextRecipe
from m4v.vae import CausalVideoVAE, VAEConfig
from m4v.world import Scene, render
from m4v.world.captions import prompt_suite
from m4v.world.dataset import world_batch, world_vocabulary


def test_world_batch_depends_on_seed_and_step_only():
    a, caps_a, _ = world_batch(3, 5, 2, n_frames=9)
    b, caps_b, _ = world_batch(3, 5, 2, n_frames=9)
    c, _, _ = world_batch(3, 6, 2, n_frames=9)
    assert a.shape == (2, 3, 9, 64, 64) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and caps_a == caps_b and not torch.equal(a, c)


def test_vocabulary_covers_every_caption():
    vocab = set(world_vocabulary())
    for entry in prompt_suite(3):
        assert set(entry["prompt_en"].replace(",", " ,").split()) <= vocab


@pytest.fixture(scope="module")
def frozen_root(tmp_path_factory):
    """A weights root with an untrained tiny VAE and the tiny text encoders (what the denoiser builds on)."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    CausalVideoVAE(VAEConfig.tiny()).save_pretrained(root / "vae-tiny")
    TextRecipe("text-tiny").save(root / "text-tiny")
    return root


def _weights(recipe_dir):
    from safetensors.torch import load_file

    return load_file(str(recipe_dir / "model.safetensors"))


def test_denoiser_resume_equals_straight_run(frozen_root, tmp_path, monkeypatch):
    opts = dict(seed=0, weights_root=frozen_root, batch=2, dataset_size=6, progress=False)
    train("m4v-tiny", tmp_path / "straight", steps=4, checkpoint_every=2, **opts)
    recipe = get_recipe("m4v-tiny")
    step = recipe.step

    def killed_at_step_3(self, i):  # the run dies after the step-2 checkpoint (and after logging step 3)
        if i == 3:
            raise KeyboardInterrupt
        return step(self, i)

    monkeypatch.setattr(recipe, "step", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train("m4v-tiny", tmp_path / "resumed", steps=4, checkpoint_every=2, **opts)
    monkeypatch.setattr(recipe, "step", step)
    train("m4v-tiny", tmp_path / "resumed", steps=4, checkpoint_every=2, **opts)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "resumed" / "loss.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(np.isfinite(float(r["loss"])) for r in rows)
    record = json.loads((tmp_path / "resumed" / "training.json").read_text())
    assert record["steps"] == 4 and record["seed"] == 0 and "git_commit" in record and record["command"]
    assert len(list((tmp_path / "straight").glob("world_latents-*.safetensors"))) == 1  # encoded once, cached


def test_dit_and_m4v_differ_only_in_the_mixer(frozen_root):
    m4v = get_recipe("m4v-tiny")("m4v-tiny", weights_root=frozen_root)
    dit = get_recipe("dit-tiny")("dit-tiny", weights_root=frozen_root)
    a, b = m4v.model.cfg.to_dict(), dit.model.cfg.to_dict()
    assert {k for k in a if a[k] != b[k]} == {"mixer"}
    assert (a["mixer"], b["mixer"]) == ("m4v", "attention")


def test_resume_refuses_another_model(frozen_root, tmp_path):
    train("m4v-tiny", tmp_path, steps=1, weights_root=frozen_root, batch=1, dataset_size=2, progress=False)
    with pytest.raises(ValueError, match="state.pt"):
        train("m4v-tiny", tmp_path, steps=2, seed=1, weights_root=frozen_root, batch=1, dataset_size=2,
              progress=False)


def test_missing_weights_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="vae-tiny"):
        weights_path("vae-tiny", tmp_path)
    with pytest.raises(ValueError, match="--model"):
        get_recipe("no-such-model")


def test_vae_round_trip_keeps_normalisation(tmp_path):
    torch.manual_seed(0)
    cfg = VAEConfig(**{**VAEConfig.tiny().__dict__, "image_shift": 0.5, "video_scale": 2.0})
    vae = CausalVideoVAE(cfg).eval()
    vae.save_pretrained(tmp_path)
    again = CausalVideoVAE.from_pretrained(tmp_path)
    assert again.cfg == cfg
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        z = vae.encode_normalized(video)
        torch.testing.assert_close(again.encode_normalized(video), z)
        # normalised = (mean - shift) * scale, first frame with the image statistics
        torch.testing.assert_close(z[:, :, :1], (vae.encode(video)[0][:, :, :1] - 0.5) * cfg.image_scale)


def test_latent_frames_cover_the_requested_frames():
    assert [latent_frames_for(n) for n in (1, 2, 9, 10, 16, 17)] == [1, 2, 2, 3, 3, 3]


def test_world_quality_scores_true_renders_perfectly():
    for entry in prompt_suite(2, seed=5):
        frames = render(Scene.from_dict(entry["auxiliary_info"]["world"]))
        row = score_video(frames, entry)
        assert all(v == 1.0 for v in row.values() if not np.isnan(v)), (entry["prompt_en"], row)
