"""m4v-wan-tiny-reward (issue 38 item 3): reward learning on the whole video latent of a Wan transformer."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.cli import main

SUITE = """
name = "wan-reward-test"
models = {models}
prompts = "world"
per_kind = 1
prompt_limit = 1
batch = 1
evaluators = ["world_count"]
[sampling]
frames = 9
height = 32
width = 32
steps = [1, 1, 1]
"""


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory) -> Path:
    """A small MM-DiM Wan transformer on vae-tiny's latent and text-tiny's features, with a non-zero velocity head
    (the built model's head is zero, so nothing but the head would get a gradient at the first step)."""
    from m4v.recipes.wan_tiny import wan_tiny_config
    from m4v.wan import build_wan

    torch.manual_seed(0)
    model = build_wan(wan_tiny_config("m4v-wan-tiny", dim=32, ffn_dim=64, num_heads=2, num_layers=2))
    torch.nn.init.normal_(model.proj_out.weight, std=0.02)
    out = tmp_path_factory.mktemp("wan") / "tiny-wan"
    model.save_pretrained(out)
    return out


def _recipe(tiny_wan, tmp_path, **options):
    from m4v.recipes import get_recipe

    torch.set_num_threads(1)
    recipe = get_recipe("m4v-wan-tiny-reward")("m4v-wan-tiny-reward", init_from=str(tiny_wan), dataset_size=2,
                                               **options)
    recipe.out, recipe.total_steps = tmp_path / "run", 10
    return recipe


def _fixed_draw(recipe, model):
    """(FM loss, reward) of a fixed draw: the dataset's clips, the noise and sigmas of one seed."""
    from m4v.fidelity import combined_reward
    from m4v.recipes import step_generator
    from m4v.recipes.wan import flow_matching_sample
    from m4v.wan_text_to_video import wan_text

    data = recipe.dataset
    sample = flow_matching_sample(model, data.latents, wan_text(data.text), step_generator(99, 0))
    video = recipe.encoders.vae.decode_normalized(sample.clean_estimate())          # (B, 3, 17, 64, 64)
    return sample, combined_reward(video, data.captions, recipe.clip, recipe.fidelity).mean()


def test_clean_estimate_is_exact_for_the_true_velocity():
    """x_sigma - sigma v recovers x0 when v is the true velocity noise - x0 (hand algebra of the rectified flow)."""
    from m4v.recipes.wan import flow_matching_sample

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 2, 6, 6, generator=g)
    captured = {}

    def oracle(noisy, timestep, text):   # recovers noise from x_sigma and sigma, returns noise - x0
        s = (timestep / 1000).view(-1, 1, 1, 1, 1)
        captured["noise"] = (noisy - (1 - s) * x0) / s
        return captured["noise"] - x0

    sample = flow_matching_sample(oracle, x0, None, g, shift=3.0)
    assert sample.loss.item() < 1e-8 and (sample.sigma > 0).all() and (sample.sigma < 1).all()
    torch.testing.assert_close(sample.clean_estimate(), x0, atol=1e-4, rtol=1e-4)
    wrong = flow_matching_sample(lambda n, t, c: torch.zeros_like(n), x0, None, torch.Generator().manual_seed(0))
    assert (wrong.clean_estimate() - x0).abs().max() > 0.1   # a wrong velocity gives a wrong estimate


def test_the_reward_reaches_the_transformer_and_nothing_frozen(tiny_wan, tmp_path):
    """The reward alone (no FM term) is finite and its gradient is non-zero on the transformer's blocks (MM-DiM
    mixer, cross-attention, FFN) and head; the VAE and both reward models stay frozen and get none."""
    recipe = _recipe(tiny_wan, tmp_path, batch=2)
    metrics = recipe.step(0)   # builds the dataset; one combined step
    assert all(np.isfinite(v) for v in metrics.values()) and metrics["loss"] != metrics["fm_loss"]
    recipe.model.zero_grad(set_to_none=True)
    _, reward = _fixed_draw(recipe, recipe.model)
    assert torch.isfinite(reward) and 0 < reward.item() < 2
    reward.backward()
    grads = {n: p.grad for n, p in recipe.model.named_parameters()}
    for part in (".mmdim.", ".attn2.", ".ffn.", "proj_out."):
        named = [g for n, g in grads.items() if part in n]
        assert named and any(g is not None and g.abs().sum() > 0 for g in named), part
    assert sum(g is not None and g.abs().sum() > 0 for g in grads.values()) > 0.5 * len(grads)
    frozen = [*recipe.encoders.vae.parameters(), *recipe.clip[0].parameters(), *recipe.fidelity.parameters()]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)


def test_a_few_steps_lower_the_combined_loss_and_raise_the_reward(tiny_wan, tmp_path):
    """8 steps on the 2 clips of the dataset: on a fixed draw of those clips the combined loss L_FM - reward falls
    and the reward rises above the start, and above where the same 8 steps of FM alone leave it (the reward term,
    not FM, raises it: 0.603 -> 0.631 with it, 0.593 without, here)."""
    from m4v.wan_text_to_video import load_wan

    def trained(reward_weight):
        recipe = _recipe(tiny_wan, tmp_path, batch=2, lr=0.1, reward_weight=reward_weight)   # warm-up: 50 steps
        metrics = [recipe.step(i) for i in range(8)]
        assert all(np.isfinite(m["loss"]) and np.isfinite(m["reward"]) for m in metrics)
        return recipe

    recipe, fm_only = trained(1.0), trained(0.0)
    with torch.no_grad():
        start_sample, start_reward = _fixed_draw(recipe, load_wan(tiny_wan))
        end_sample, end_reward = _fixed_draw(recipe, recipe.model.eval())
        _, fm_only_reward = _fixed_draw(recipe, fm_only.model.eval())
    start, end = (start_sample.loss - start_reward).item(), (end_sample.loss - end_reward).item()
    assert end < start - 0.05, (start, end)
    assert end_reward.item() > max(start_reward.item(), fm_only_reward.item()) + 0.01, (
        start_reward.item(), end_reward.item(), fm_only_reward.item())


def test_train_cli_writes_a_directory_run_generates_from(tiny_wan, tmp_path, capsys):
    """`train --model m4v-wan-tiny-reward --init-from DIR --steps 2` -> a directory `run --models` makes videos
    with, whose record names the recipe and its start; a start of another latent width is one line, exit 2."""
    out = tmp_path / "rewarded"
    assert main(["train", "--model", "m4v-wan-tiny-reward", "--init-from", str(tiny_wan), "--steps", "2",
                 "--batch", "1", "--dataset-size", "2", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["model"] == "m4v-wan-tiny-reward" and record["steps"] == 2
    assert record["config"]["init_from"] == str(tiny_wan.resolve())
    log = pd.read_csv(out / "loss.csv")
    assert len(log) == 2 and np.isfinite(log["reward"]).all()
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(models=json.dumps([str(out)])))
    results = tmp_path / "results"
    assert main(["run", "--suite", str(suite), "--out", str(results), "--no-cache"]) == 0
    assert set(pd.read_csv(results / "per_video.csv")["status"]) == {"ok"}
    (video,) = (results / "videos" / "rewarded").glob("*.mp4")
    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (9, 32, 32, 3) and frames.std() > 0

    from m4v.wan import WanConfig, build_wan

    build_wan(WanConfig.tiny()).save_pretrained(tmp_path / "narrow")   # 4 latent channels, not vae-tiny's 16
    capsys.readouterr()
    assert main(["train", "--model", "m4v-wan-tiny-reward", "--init-from", str(tmp_path / "narrow"), "--steps", "1",
                 "--out", str(tmp_path / "refused")]) == 2
    # (transformers' own progress bars of loading text-tiny come before it)
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("m4v-bench")]
    assert "--init-from" in line and "4 latent channels" in line and not (tmp_path / "refused").exists()


def test_wan_pipeline_recipe_takes_the_reward_option(tmp_path):
    """`train --model wan --option reward_weight=1` on a converted tiny pipeline: the step scores the decode of
    the whole latent's clean estimate by the directory's own VAE (finite, a gradient on the transformer, none on
    the VAE), the record names the weight; without the option the step is flow matching alone, as before."""
    from test_wan import build_tiny_wan_pipeline  # tests/ is on sys.path

    from m4v.recipes import get_recipe

    torch.set_num_threads(1)
    converted = tmp_path / "m4v"
    assert main(["convert", "wan", str(build_tiny_wan_pipeline(tmp_path / "src")), "--out", str(converted),
                 "--mixer", "mm-dim"]) == 0
    wan = get_recipe("wan")
    recipe = wan("wan", init_from=str(converted), batch=2, dataset_size=2, text_len=16, reward_weight=1.0)
    recipe.total_steps = 2
    metrics = recipe.step(0)
    assert set(metrics) == {"loss", "fm_loss", "reward"} and all(np.isfinite(v) for v in metrics.values())
    assert metrics["loss"] == pytest.approx(metrics["fm_loss"] - metrics["reward"], abs=1e-5)
    grads = [p.grad for n, p in recipe.model.named_parameters() if ".mmdim." in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None and not p.requires_grad for p in recipe.encoders.pipe.vae.parameters())
    plain = wan("wan", init_from=str(converted), batch=2, dataset_size=2, text_len=16)
    plain.total_steps = 2
    assert set(plain.step(0)) == {"loss"} and "reward_weight" not in plain.config()

    out = tmp_path / "trained"
    assert main(["train", "--model", "wan", "--init-from", str(converted), "--out", str(out), "--steps", "1",
                 "--batch", "1", "--dataset-size", "2", "--option", "text_len=16", "--option", "reward_weight=1",
                 "--quiet"]) == 0
    assert json.loads((out / "training.json").read_text())["config"]["reward_weight"] == 1.0
    assert np.isfinite(pd.read_csv(out / "loss.csv")["reward"]).all()
    assert (out / "model_index.json").is_file() and (out / "transformer" / "config.json").is_file()
