"""Multi-node torchrun as a test (issue 39 item 4): two c10d nodes on this host (two launchers, one process each,
torchrun's own rendezvous) give the table of one process for `run` and the loss curve of one process for `train`.
Skipped when the rendezvous port cannot be bound."""

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
SUITE = """
name = "two-nodes"
models = ["reconstruction:vae-tiny"]
prompts = "world"
per_kind = 1
prompt_limit = 4
batch = 1
evaluators = ["world_colour_shape", "color", "compute"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""


def rendezvous_port() -> int:
    """A port the c10d store can bind on localhost, or skip."""
    try:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            return s.getsockname()[1]
    except OSError as exc:
        pytest.skip(f"cannot bind a rendezvous port on localhost: {exc}")


TINY_TRAIN = ["train", "--model", "dit-tiny", "--batch", "2", "--dataset-size", "4", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """`torchrun --nnodes 2 --rdzv-backend c10d` twice on this host, as two machines would launch it; each node's one
    process runs this module's `run` then its `train` (tests/torchrun_commands.py: each command its own process
    group, as two jobs would be). -> the root holding suite.toml and two/run, two/train."""
    root = tmp_path_factory.mktemp("two-nodes")
    (root / "suite.toml").write_text(SUITE)
    commands = [[free_port(), ["run", "--suite", str(root / "suite.toml"), "--out", str(root / "two" / "run"),
                               "--no-cache"]],
                [free_port(), [*TINY_TRAIN, "--out", str(root / "two" / "train")]]]
    port = rendezvous_port()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
              "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", f"m4v-{port}",
              "--max-restarts", "0", str(REPO / "tests" / "torchrun_commands.py"), json.dumps(commands)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(launch, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        results = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, err) in zip(nodes, results):
        if "address already in use" in err.lower() and node.returncode:
            pytest.skip("the rendezvous port was taken meanwhile")
        assert node.returncode == 0, err[-3000:]
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_on_two_c10d_nodes_gives_the_one_process_table(tmp_path, two_nodes, one_thread):
    assert main(["run", "--suite", str(two_nodes / "suite.toml"), "--out", str(tmp_path / "one"), "--no-cache"]) == 0
    reference = (tmp_path / "one" / "per_video.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "one" / "per_video.csv")) >= 4   # rows to compare
    assert (two_nodes / "two" / "run" / "per_video.csv").read_bytes() == reference


def test_train_on_two_c10d_nodes_gives_the_one_process_loss_curve(tmp_path, two_nodes):
    assert main([*TINY_TRAIN, "--threads", "1", "--out", str(tmp_path / "one")]) == 0
    one, two = (pd.read_csv(d / "loss.csv") for d in (tmp_path / "one", two_nodes / "two" / "train"))
    assert one["step"].tolist() == two["step"].tolist() == [1, 2]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)   # float32 rounding of 1 + 1 rows vs 2
