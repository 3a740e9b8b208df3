"""`train` under torchrun (issue 39 item 2): 2 gloo ranks on CPU give the loss curve of 1 process at the same global
batch (each rank draws the whole batch and computes its rows; gradients averaged), rank 0 alone writes, and the run
resumes in 1 process where the 2 ranks stopped. --grad-checkpoint changes no number; --bf16 is CUDA's only."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

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


def test_two_gloo_ranks_equal_one_process_and_resume_in_one(tmp_path, capsys):
    one = tmp_path / "one"
    assert main(["train", *TINY, "--steps", "3", "--threads", "1", "--out", str(one)]) == 0
    two = tmp_path / "two"
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            str(free_port()), "-m", "benchmarks.cli", "train", *TINY, "--steps", "3",
                            "--stop-after", "2", "--out", str(two)],
                           cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert ranks.stdout.count("stopped dit-tiny at step 2") == 1   # rank 0 alone reports (and writes)
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
