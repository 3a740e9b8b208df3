"""`train` under torchrun (issue 39 item 2): 2 gloo ranks on CPU give the loss curve of 1 process at the same global
batch (each rank draws the whole batch and computes its rows; gradients averaged), rank 0 alone writes, and the run
resumes in 1 process where the 2 ranks stopped. --grad-checkpoint changes no number; --bf16 is CUDA's only."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--model", "dit-tiny", "--batch", "4", "--dataset-size", "8", "--checkpoint-every", "1", "--quiet"]
# float32 sums over 4 rows in one process vs 2 + 2 rows and a gradient all-reduce: the same numbers up to rounding
RTOL = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "loss.csv").drop(columns=["seconds"])


# The two-rank runs of every test below, in one torchrun job (tests/torchrun_commands.py: one interpreter a rank runs
# the CLI commands one after another, each in its own process group): {name: (output directory, argv)}.
ROW_RECIPES = ("clip-tiny", "text-tiny", "reward-tiny")
ROW_ARGS = ["--batch", "4", "--steps", "3", "--checkpoint-every", "1", "--quiet"]
WAN_RUNS = {"wan-tiny": ["--batch", "4", "--dataset-size", "4"],
            "m4v-wan-tiny-reward": ["--batch", "2", "--dataset-size", "2", "--init-from", "{start}"],
            "wan": ["--batch", "2", "--dataset-size", "2", "--init-from", "{pipe}", "--option", "text_len=16"]}
WAN_ARGS = ["--steps", "3", "--checkpoint-every", "1", "--quiet"]


def wan_starts(root: Path) -> dict:
    """{start: a small attention Wan on vae-tiny's latent, its head non-zero (the built one is zero): the reward
    run's start; pipe: a tiny random Wan2.1 pipeline directory (tests/test_wan.py): `wan`'s}."""
    import torch
    from test_wan import build_tiny_wan_pipeline  # tests/ is on sys.path

    from m4v.recipes.wan_tiny import wan_tiny_config
    from m4v.wan import build_wan

    torch.manual_seed(0)
    start = build_wan(wan_tiny_config("wan-tiny", dim=32, ffn_dim=64, num_heads=2, num_layers=2))
    torch.nn.init.normal_(start.proj_out.weight, std=0.02)
    start.save_pretrained(root / "start")
    return {"start": root / "start", "pipe": build_tiny_wan_pipeline(root / "pipe")}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every two-rank run of this module, made once: -> (root, {name: argv without --out}, the job's stdout)."""
    root = tmp_path_factory.mktemp("two-ranks")
    starts = wan_starts(root)
    runs = {"dit-tiny": ["train", *TINY, "--steps", "3", "--stop-after", "2"],
            **{model: ["train", "--model", model, *ROW_ARGS] for model in ROW_RECIPES},
            **{model: ["train", "--model", model, *[a.format(**starts) for a in args], *WAN_ARGS]
               for model, args in WAN_RUNS.items()}}
    commands = [[free_port(), [*argv, "--out", str(root / "two" / name)]] for name, argv in runs.items()]
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            str(free_port()), str(REPO / "tests" / "torchrun_commands.py"), json.dumps(commands)],
                           cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                           timeout=600)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    return root, runs, ranks.stdout


def test_two_gloo_ranks_equal_one_process_and_resume_in_one(tmp_path, two_ranks, capsys):
    one = tmp_path / "one"
    assert main(["train", *TINY, "--steps", "3", "--threads", "1", "--out", str(one)]) == 0
    root, _, stdout = two_ranks
    two = root / "two" / "dit-tiny"
    assert stdout.count("stopped dit-tiny at step 2") == 1   # rank 0 alone reports (and writes)
    # the same world size change the other way round: the 2-rank state resumes in one process to the end
    assert main(["train", *TINY, "--steps", "3", "--threads", "1", "--out", str(two)]) == 0
    reference, resumed = losses(one), losses(two)
    assert reference["step"].tolist() == resumed["step"].tolist() == [1, 2, 3]
    assert reference["loss"].nunique() == 3   # a curve, not a constant
    np.testing.assert_allclose(resumed["loss"], reference["loss"], rtol=RTOL)
    assert (resumed[["unit", "stage"]].values == reference[["unit", "stage"]].values).all()
    from safetensors.torch import load_file

    a, b = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-3, atol=1e-5, err_msg=key)


def test_grad_checkpoint_changes_no_number_and_bf16_is_refused_on_cpu(tmp_path, capsys):
    for out, extra in (("plain", []), ("checkpointed", ["--grad-checkpoint"])):
        assert main(["train", *TINY, "--steps", "2", "--threads", "1", "--out", str(tmp_path / out), *extra]) == 0
    plain, checkpointed = losses(tmp_path / "plain"), losses(tmp_path / "checkpointed")
    np.testing.assert_allclose(checkpointed["loss"], plain["loss"], rtol=1e-6)
    capsys.readouterr()
    assert main(["train", *TINY, "--steps", "2", "--bf16", "--out", str(tmp_path / "bf16")]) == 2
    assert "--bf16: bfloat16 autocast runs on CUDA only" in capsys.readouterr().err
    assert not (tmp_path / "bf16").exists()
    assert main(["train", "--model", "vae-tiny", "--steps", "1", "--grad-checkpoint", "--out",
                 str(tmp_path / "vae")]) == 2
    assert "vae-tiny has no blocks to checkpoint" in capsys.readouterr().err


# clip-tiny (contrastive: features gathered across ranks, BatchNorm over the global batch), text-tiny (LiT) and
# reward-tiny (pairwise preference), two ranks each in the module's torchrun job
def test_clip_text_and_reward_recipes_on_two_gloo_ranks_equal_one_process(tmp_path, two_ranks, capsys):
    for model in ROW_RECIPES:
        assert main(["train", "--model", model, *ROW_ARGS, "--threads", "1",
                     "--out", str(tmp_path / "one" / model)]) == 0
    root, _, stdout = two_ranks
    from safetensors.torch import load_file

    weights = {"clip-tiny": "open_clip_model.safetensors", "text-tiny": "clip_text/model.safetensors",
               "reward-tiny": "model.safetensors"}
    for model in ROW_RECIPES:
        one, two = tmp_path / "one" / model, root / "two" / model
        assert stdout.count(f"trained {model} for ") == 1, stdout   # rank 0 alone reports (and writes)
        assert json.loads((two / "training.json").read_text())["world_size"] == 2
        reference, split = losses(one), losses(two)
        assert reference["step"].tolist() == split["step"].tolist() == [1, 2, 3]
        assert reference["loss"].nunique() == 3, model   # a curve, not a constant
        np.testing.assert_allclose(split.values, reference.values, rtol=RTOL, atol=1e-6, err_msg=model)
        a, b = load_file(one / weights[model]), load_file(two / weights[model])
        assert a.keys() == b.keys()
        # the trained weights too (BatchNorm's running statistics included). Adam moves a parameter by about lr per
        # step whatever its gradient's size, so a near-zero gradient whose sign rounding flips may differ by up to
        # 2 lr per step: atol is that bound over 3 warm-up steps of clip-tiny and text-tiny (lr 2e-5, 4e-5, 6e-5)
        for key in a:
            np.testing.assert_allclose(b[key].float().numpy(), a[key].float().numpy(), rtol=1e-3, atol=2.5e-4,
                                       err_msg=f"{model} {key}")


# The Wan recipes: the whole-latent flow-matching draw (and caption dropout, the batch's clips) made for the whole
# batch on every rank, the forward on the rank's rows (m4v/recipes/wan.py `rows=`); the reward variant scores its
# rows; `wan` trains a Wan2.1 pipeline directory's transformer on clips its own VAE and T5 encode
def test_wan_recipes_on_two_gloo_ranks_equal_one_process(tmp_path, two_ranks, capsys):
    root, _, stdout = two_ranks
    starts = {"start": root / "start", "pipe": root / "pipe"}   # the two-rank runs' own starts
    runs = {model: [a.format(**starts) for a in args] + WAN_ARGS for model, args in WAN_RUNS.items()}
    for model, args in runs.items():
        assert main(["train", "--model", model, *args, "--threads", "1", "--out", str(tmp_path / "one" / model)]) == 0
    for model in runs:
        assert stdout.count(f"trained {model} for ") == 1, stdout   # rank 0 alone reports (and writes)
        reference, split = losses(tmp_path / "one" / model), losses(root / "two" / model)
        assert reference["step"].tolist() == split["step"].tolist() == [1, 2, 3]
        assert reference["loss"].nunique() == 3, model   # a curve, not a constant
        difference = ((split - reference).abs() / reference.abs()).drop(columns="step").max().max()
        print(f"{model}: 2 gloo ranks vs 1 process, max relative difference of the logged metrics {difference:.2e}")
        np.testing.assert_allclose(split.values, reference.values, rtol=RTOL, atol=1e-6, err_msg=model)
