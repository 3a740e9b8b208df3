"""Training loop and recipes: world data determinism, resume equals an uninterrupted run, the denoiser's
latent cache, VAE checkpoints with their normalisation, and the world-quality oracle on true renders."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from benchmarks.train import train
from m4v.recipes import get_recipe, weights_path
from m4v.recipes.text_encoders import Recipe as TextRecipe
from m4v.text_to_video import latent_frames_for
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
    assert len(list(tmp_path.glob("world_latents-*.safetensors"))) == 1  # encoded once, shared beside the runs


def test_text_tiny_lit_training_learns_and_reloads(tmp_path):
    """text-tiny's CLIP text tower, trained against clip-tiny's locked image tower, beats its start within 40
    steps (in-batch InfoNCE starts near log(batch)), and the saved encoders load with a 64-d pooled output."""
    from m4v.recipes.text_encoders import POOLED_DIM, TEXT_LEN
    from m4v.text_encoders import TextEncoders

    torch.manual_seed(0)
    train("text-tiny", tmp_path / "text", steps=40, batch=32, progress=False)
    with open(tmp_path / "text" / "loss.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.mean(losses[:5]) > np.log(32) - 0.5 and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    cond = TextEncoders.from_dir(tmp_path / "text", max_length=TEXT_LEN).encode(["an orange star", "a red square"])
    assert cond.pooled.shape == (2, POOLED_DIM) and not torch.allclose(cond.pooled[0], cond.pooled[1])


def test_latent_cache_is_keyed_by_the_world(monkeypatch):
    """A cached latent dataset is never reused for a changed world (here: other object sizes)."""
    import m4v.world.captions as captions
    from m4v.recipes.denoiser import world_fingerprint

    before = world_fingerprint(0)
    assert world_fingerprint(0) == before and world_fingerprint(1) != before
    monkeypatch.setattr(captions, "OBJECT_RADIUS", (7.0, 10.0))
    monkeypatch.setattr(captions, "PAIR_RADIUS", 7.0)
    assert world_fingerprint(0) != before


def test_latent_cache_beside_the_encoders_is_reused_from_another_run_dir(frozen_root, tmp_path, monkeypatch):
    """A run directory without a cache reads the one beside the encoders' weights instead of re-encoding."""
    import m4v.recipes.denoiser as denoiser

    encoders = denoiser.FrozenWorldEncoders(frozen_root)
    first = denoiser.LatentDataset(encoders, 0, 3, frozen_root)
    assert len(list(frozen_root.glob("world_latents-*.safetensors"))) == 1
    fingerprint = denoiser.world_fingerprint(0)
    monkeypatch.setattr(denoiser, "world_fingerprint", lambda seed: fingerprint)
    monkeypatch.setattr(denoiser, "world_batch", lambda *a: pytest.fail("re-encoded although a cache exists"))
    again = denoiser.LatentDataset(encoders, 0, 3, tmp_path / "run")
    torch.testing.assert_close(again.latents, first.latents)
    assert again.captions == first.captions and not (tmp_path / "run").exists()


def test_stage_weights_pick_the_trained_stages(frozen_root, tmp_path):
    """--stage-weights 0 0 1 trains only the last stage; bad weights and other recipes are refused."""
    from benchmarks.cli import main

    train("dit-tiny", tmp_path / "run", steps=3, weights_root=frozen_root, batch=1, dataset_size=2, progress=False,
          stage_weights=(0, 0, 1))
    with open(tmp_path / "run" / "loss.csv") as f:
        assert [float(r["stage"]) for r in csv.DictReader(f)] == [2.0, 2.0, 2.0]
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["config"]["stage_weights"] == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="--stage-weights"):
        get_recipe("dit-tiny")("dit-tiny", weights_root=frozen_root, stage_weights=(1, 1))
    assert main(["train", "--model", "vae-tiny", "--out", str(tmp_path / "vae"), "--stage-weights", "1", "1", "1",
                 "--weights", str(frozen_root)]) == 2
    assert not (tmp_path / "vae").exists()
    with pytest.raises(ValueError, match="vae-tiny takes no --stage-weights"):
        train("vae-tiny", tmp_path / "vae", steps=1, weights_root=frozen_root, stage_weights=(1, 1, 1))


def test_snapshots_hold_the_weights_of_their_step(frozen_root, tmp_path, monkeypatch):
    """--snapshot-every 2 of a 3-step run: step-000002 holds the EMA weights the step-2 checkpoint holds (read
    through the resumable state, another path), with its record; the last step is OUT itself, not a snapshot."""
    from m4v.transformer import M4VTransformer

    opts = dict(weights_root=frozen_root, batch=1, dataset_size=2, progress=False, checkpoint_every=2,
                snapshot_every=2)
    recipe = get_recipe("dit-tiny")
    step = recipe.step

    def killed_at_step_3(self, i):
        if i == 2:
            raise KeyboardInterrupt
        return step(self, i)

    monkeypatch.setattr(recipe, "step", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train("dit-tiny", tmp_path / "run", steps=3, **opts)
    monkeypatch.setattr(recipe, "step", step)
    snapshot = tmp_path / "run" / "snapshots" / "step-000002"
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["recipe"]["module.ema"]
    saved = M4VTransformer.from_pretrained(snapshot).state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)
    train("dit-tiny", tmp_path / "run", steps=3, **opts)
    assert [p.name for p in (tmp_path / "run" / "snapshots").iterdir()] == ["step-000002"]
    record = json.loads((snapshot / "training.json").read_text())
    assert (record["step"], record["of_steps"], record["model"]) == (2, 3, "dit-tiny") and "git_commit" in record
    with pytest.raises(ValueError, match="--snapshot-every"):
        train("dit-tiny", tmp_path / "bad", steps=1, snapshot_every=0, weights_root=frozen_root)
    with pytest.raises(ValueError, match=r"--steps must be an integer in \[1, 10000000\], got 0"):
        train("dit-tiny", tmp_path / "bad", steps=0, weights_root=frozen_root)
    assert not (tmp_path / "bad").exists()


def test_stop_after_saves_the_snapshot_a_full_schedule_would_and_resumes_to_its_end(frozen_root, tmp_path):
    """--stop-after 2 of a 3-step schedule: the same step-2 weights as the uninterrupted run's --snapshot-every 2
    snapshot, OUT not complete; rerun without it, the run ends on the uninterrupted run's final weights."""
    from benchmarks.core.outputs import is_complete
    from m4v.transformer import M4VTransformer

    opts = dict(weights_root=frozen_root, batch=1, dataset_size=2, progress=False, checkpoint_every=1)
    record = train("dit-tiny", tmp_path / "stopped", steps=3, stop_after=2, **opts)
    assert (record["step"], record["of_steps"]) == (2, 3) and not is_complete(tmp_path / "stopped")
    train("dit-tiny", tmp_path / "straight", steps=3, snapshot_every=2, **opts)

    def weights(directory):
        return M4VTransformer.from_pretrained(directory).state_dict()

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    snapshot = "snapshots/step-000002"
    assert same(weights(tmp_path / "stopped" / snapshot), weights(tmp_path / "straight" / snapshot))
    with pytest.raises(ValueError, match="beyond --stop-after 1"):
        train("dit-tiny", tmp_path / "stopped", steps=3, stop_after=1, **opts)
    assert train("dit-tiny", tmp_path / "stopped", steps=3, stop_after=2, **opts)["step"] == 2  # already there
    shutil.rmtree(tmp_path / "stopped" / "snapshots")  # as if killed after the step-2 checkpoint, before stopping
    assert train("dit-tiny", tmp_path / "stopped", steps=3, stop_after=2, **opts)["step"] == 2
    assert same(weights(tmp_path / "stopped" / snapshot), weights(tmp_path / "straight" / snapshot))
    record = train("dit-tiny", tmp_path / "stopped", steps=3, **opts)
    assert is_complete(tmp_path / "stopped") and same(weights(tmp_path / "stopped"), weights(tmp_path / "straight"))
    assert train("dit-tiny", tmp_path / "stopped", steps=3, command="a rerun", **opts) == record  # finished: kept
    with pytest.raises(ValueError, match="--stop-after must be between 1 and --steps 3, got 4"):
        train("dit-tiny", tmp_path / "bad", steps=3, stop_after=4, weights_root=frozen_root)


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


def test_one_step_clean_estimate_is_exact_for_the_true_velocity():
    from m4v.sampling import TextCondition
    from m4v.scheduler import PyramidSchedule, pyramid_latents
    from m4v.training import flow_matching_loss, one_step_clean_estimate

    schedule = PyramidSchedule()
    latents = torch.randn(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    text = TextCondition(torch.zeros(2, 4, 8), torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 8))
    zero_model = lambda frames, *rest: torch.zeros_like(frames[-1])  # noqa: E731
    for stage in range(3):
        sample = flow_matching_loss(zero_model, latents, text, schedule, torch.Generator().manual_seed(stage),
                                    unit=1, stage=stage)
        clean = pyramid_latents(latents[:, :, 1], 3)[stage]
        sigma_e = schedule.end_sigmas[stage]
        end = sigma_e * sample.noise + (1 - sigma_e) * clean       # the stage's end point (spec §2)
        sample.prediction = (sample.noisy - end) / sample.ratio.view(-1, 1, 1, 1)  # the exact velocity
        torch.testing.assert_close(one_step_clean_estimate(sample, schedule), clean, atol=1e-4, rtol=1e-4)


def test_reward_gradient_reaches_the_transformer(frozen_root, tmp_path):
    from m4v.fidelity import FidelityReward
    from m4v.recipes.denoiser import tiny_config
    from m4v.tiny_clip import build_tiny_clip, save_tiny_clip
    from m4v.transformer import build_model

    root = tmp_path / "weights"
    shutil.copytree(frozen_root, root)
    torch.manual_seed(0)
    model = build_model(tiny_config("m4v-tiny"))
    torch.nn.init.normal_(model.proj_out.weight, std=0.02)  # trained-like: a non-zero velocity head
    model.save_pretrained(root / "m4v-tiny")
    save_tiny_clip(build_tiny_clip(0), root / "clip-tiny")
    FidelityReward().save_pretrained(root / "reward-tiny")
    recipe = get_recipe("m4v-tiny-reward")("m4v-tiny-reward", weights_root=root, batch=2, dataset_size=4,
                                           reward_weight=1.0)
    recipe.out = tmp_path / "runs" / "reward"
    before = {k: v.clone() for k, v in recipe.model.state_dict().items()}
    fm_only = get_recipe("m4v-tiny-reward")("m4v-tiny-reward", weights_root=root, batch=2, dataset_size=4,
                                            reward_weight=0.0)
    fm_only.out = recipe.out
    metrics = recipe.step(0)
    fm_only.step(0)
    assert np.isfinite(metrics["reward"]) and metrics["loss"] != metrics["fm_loss"]
    # same sample, same FM term: the reward alone makes the updates differ, in the blocks too
    changed = [k for k, v in recipe.model.state_dict().items() if not torch.equal(v, fm_only.model.state_dict()[k])]
    assert any(k.startswith("single_blocks") for k in changed) and any(k.startswith("dual_blocks") for k in changed)
    assert any(not torch.equal(before[k], recipe.model.state_dict()[k]) for k in before)


def test_object_weight_marks_exactly_the_shapes():
    from m4v.recipes.vae import OBJECT_WEIGHT, object_weight
    from m4v.world.scene import shape_mask

    entry = prompt_suite(1, seed=2)[2]                                          # a colour prompt: one object
    scene = Scene.from_dict(entry["auxiliary_info"]["world"])
    from m4v.world.dataset import to_model_video

    weight = object_weight(to_model_video(render(scene))[None])[0, 0, 0]       # (H, W) of frame 0
    o = scene.objects[0]
    mask = torch.from_numpy(shape_mask(o.shape, o.x, o.y, o.radius, scene.height, scene.width))
    assert torch.equal(weight == OBJECT_WEIGHT, mask) and torch.all(weight[~mask] == 1)


def test_update_ema_follows_its_warmed_up_decay():
    from m4v.recipes.denoiser import EMA_DECAY, update_ema

    ema, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    for m, value in ((ema, 0.0), (model, 1.0)):
        torch.nn.init.constant_(m.weight, value)
        torch.nn.init.constant_(m.bias, value)
    update_ema(ema, model, step=0)          # decay (1 + 0) / (10 + 0) = 0.1: ema moves 90% of the way
    torch.testing.assert_close(ema.weight, torch.full((1, 2), 0.9))
    update_ema(ema, model, step=10**6)      # decay capped at EMA_DECAY
    torch.testing.assert_close(ema.bias, torch.full((1,), 0.9 + 0.1 * (1 - EMA_DECAY)))


def test_edge_loss_counts_a_missing_edge_once_per_axis():
    from m4v.recipes.vae import edge_loss

    video = torch.zeros(1, 1, 1, 4, 4)
    video[..., 2:] = 1.0                               # one vertical edge: a jump of 1 between columns 1 and 2
    weight = torch.ones(1, 1, 1, 4, 4)
    # flat reconstruction: horizontal differences miss 1 in 4 of the 4x3 places, vertical ones none
    assert edge_loss(torch.zeros_like(video), video, weight).item() == pytest.approx(4 / 12)
    assert edge_loss(video + 0.5, video, weight).item() == 0.0   # a constant offset has the same edges


def test_video_kinds_weights_moving_scenes():
    from m4v.recipes.vae import video_kinds
    from m4v.world.captions import KINDS

    for share in (0.5, 0.75):
        kinds = video_kinds(share)
        assert kinds.count("dynamic") / len(kinds) == share and set(kinds) == set(KINDS)


def test_paper_recipe_options_and_init_from_an_attention_model(frozen_root, tmp_path):
    """m4v-tiny with the paper readings, started from a dit-tiny-shaped attention model (`--init-from`), via the
    CLI's --option KEY=VALUE; the options are recorded, the shipped defaults are not."""
    from benchmarks import cli
    from m4v.recipes.denoiser import tiny_config
    from m4v.transformer import build_model

    torch.manual_seed(0)
    build_model(tiny_config("dit-tiny")).save_pretrained(tmp_path / "dit")
    args = ["train", "--model", "m4v-tiny", "--steps", "1", "--out", str(tmp_path / "run"), "--weights",
            str(frozen_root), "--batch", "3", "--quiet", "--init-from", str(tmp_path / "dit")]
    for option in ("temporal_variant=tiles", "history_rope=interpolate", "null_condition=empty_prompt",
                   "history_noise=shared", "history_noise_ramp=100", "sampler=all_stages", "init_mamba=attention"):
        args += ["--option", option]
    assert cli.main(args + ["--option", "dataset_size=3"]) == 0
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["config"]["sampler"] == "all_stages" and record["config"]["history_noise_ramp"] == 100
    assert record["config"]["model"]["temporal_variant"] == "tiles"
    assert set(record["final_metrics"]) == {"loss", "unit_low", "unit_high"}
    report = json.loads((tmp_path / "run" / "init_report.json").read_text())
    assert len(report["mamba_from_attention"]) == 4
    shipped = get_recipe("m4v-tiny")("m4v-tiny", weights_root=frozen_root)
    assert "sampler" not in shipped.config() and shipped.model.cfg.temporal_variant == "tiles"
