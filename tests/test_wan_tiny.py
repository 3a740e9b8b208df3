"""wan-tiny / m4v-wan-tiny (issue 38 item 4): the recipe learns, the shipped weights generate through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.cli import main
from m4v.checkpoint import WEIGHTS_DIR

SUITE = """
name = "wan-tiny-test"
models = {models}
prompts = "world"
per_kind = 1
prompt_limit = 1
batch = 1
evaluators = ["world_count", "compute"]
[sampling]
frames = 9
height = 32
width = 32
steps = [1, 1, 1]
"""


def test_the_recipe_step_is_finite_and_lowers_the_loss_on_a_fixed_batch(tmp_path):
    """A few steps of whole-latent flow matching on 4 world clips lower the loss measured on a fixed draw (same
    clips, noise and sigmas) below where the untrained model starts; m4v-wan-tiny's start copies every weight of
    its source but the self-attention, and its Mamba is at its own init."""
    from m4v.recipes import step_generator
    from m4v.recipes.wan import flow_matching_loss
    from m4v.recipes.wan_tiny import Recipe
    from m4v.sampling import TextCondition
    from m4v.wan_text_to_video import wan_text

    torch.set_num_threads(1)
    recipe = Recipe("wan-tiny", batch=4, lr=2e-2, dataset_size=4)   # warm-up: 50 steps
    recipe.out, recipe.total_steps = tmp_path / "run", 8
    metrics = [recipe.step(i) for i in range(8)]
    assert all(np.isfinite(m["loss"]) for m in metrics)
    data = recipe.dataset

    def fixed_loss(model):
        with torch.no_grad():
            text = TextCondition(data.text.tokens, data.text.mask, data.text.pooled)
            return flow_matching_loss(model, data.latents, wan_text(text), step_generator(99, 0)).item()

    untrained = Recipe("wan-tiny", batch=4, dataset_size=4).model
    assert fixed_loss(recipe.model) < 0.95 * fixed_loss(untrained)   # 0.93 here: 8 steps, mostly warm-up

    recipe.model.save_pretrained(tmp_path / "wan")
    mm = Recipe("m4v-wan-tiny", batch=4, dataset_size=4, init_from=str(tmp_path / "wan"))
    mm.out, mm.total_steps = tmp_path / "run", 2
    source = recipe.model.state_dict()
    for name, value in mm.model.state_dict().items():
        if ".mmdim." in name or name == "registers":
            assert name not in source
        else:
            assert torch.equal(value, source[name]), name
    assert mm.init_report["initialised"] == sum(".mmdim." in n or n == "registers" for n in mm.model.state_dict())
    assert np.isfinite(mm.step(0)["loss"])


@pytest.mark.skipif(not (WEIGHTS_DIR / "m4v-wan-tiny" / "model.safetensors").is_file(), reason="not trained")
def test_shipped_wan_models_generate_through_the_cli_and_a_renamed_copy_scores_the_same(tmp_path):
    """`run --models wan-tiny m4v-wan-tiny COPY`: a 9-frame 32x32 video each, counted FLOPs, records of their
    training; the renamed copy of wan-tiny gives wan-tiny's frames and scores, m4v-wan-tiny other ones."""
    copy = tmp_path / "renamed"
    shutil.copytree(WEIGHTS_DIR / "wan-tiny", copy)
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(models=json.dumps(["wan-tiny", "m4v-wan-tiny", str(copy)])))
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-cache"]) == 0   # the copy regenerates
    rows = pd.read_csv(out / "per_video.csv")
    assert set(rows["status"]) == {"ok"}
    videos = {}
    for name in ("wan-tiny", "m4v-wan-tiny", "renamed"):
        (video,) = (out / "videos" / name).glob("*.mp4")
        with av.open(str(video)) as container:
            videos[name] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        assert videos[name].shape == (9, 32, 32, 3)
    assert np.array_equal(videos["renamed"], videos["wan-tiny"])
    assert not np.array_equal(videos["m4v-wan-tiny"], videos["wan-tiny"])
    score = rows.set_index(["model", "dimension"])["score"]
    for dim in ("world_count", "compute"):
        assert score[("renamed", dim)] == score[("wan-tiny", dim)]
    # 3 Euler steps x CFG: m4v-wan-tiny's MM-DiM counts other FLOPs than wan-tiny's attention
    assert score[("m4v-wan-tiny", "compute")] != score[("wan-tiny", "compute")] > 0
    generation = pd.read_csv(out / "generation.csv").set_index("model")
    assert (generation["forwards"] == 3).all() and (generation["mixer_tflops"] > 0).all()
    checkpoints = json.loads((out / "results.json").read_text())["provenance"]["checkpoints"]
    assert checkpoints["m4v-wan-tiny"]["trained_steps"] > 0
    assert Path(WEIGHTS_DIR / "m4v-wan-tiny" / "training.json").is_file()
