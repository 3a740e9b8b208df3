"""Runs survive faults: SIGKILL mid-run then the same command (nothing finished is lost or recomputed, tables
equal to an uninterrupted run), one run per output directory (a lock), and a full disk loses nothing written. (Two
torchrun ranks give the 1-process tables and videos bit for bit: tests/test_invariants.py, one torchrun run for
every whole-run check.)"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import in_process
import pandas as pd
import pytest

from benchmarks.core.errors import OutputError
from benchmarks.core.outputs import OutputLock, atomic_write_text
from benchmarks.reporting.writers import MEASURED_COLUMNS

SUITE = """
name = "resume-test"
models = ["dit-tiny"]
prompts = "world"
per_kind = 1
batch = 2
evaluators = ["world_colour_shape", "world_count", "temporal_flickering", "compute"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""
REPO = Path(__file__).resolve().parent.parent
LOG = re.compile(r"videos: (\d+) from the cache, (\d+) generated; records: (\d+) from the cache, (\d+) computed")


def run_cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, **kwargs)


def finished_samples(cache: Path) -> int:
    return len(list(cache.glob("samples/*/generation.json")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted one-process run (uncached) the killed runs are held to: made once."""
    root = tmp_path_factory.mktemp("reference")
    suite = root / "suite.toml"
    suite.write_text(SUITE)
    done = one_thread_cli("run", "--suite", suite, "--out", root / "one", "--no-cache")
    assert done.returncode == 0, done.stderr
    return root / "one"


def one_thread_cli(*args):
    """The command in this process at the killed run's one thread (its float sums), torch's threads restored."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return in_process.cli(*args)
    finally:
        torch.set_num_threads(threads)


def test_sigkill_then_rerun_loses_and_recomputes_nothing(tmp_path, reference):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", "--suite", str(suite), "--out", str(out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 600
    while finished_samples(out / "cache") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = finished_samples(out / "cache")
    records = len(list((out / "cache").glob("records-v2/*/*.json")))
    assert 0 < done < 8, "the kill should land mid-run"
    assert not (out / "COMPLETE").exists()
    rerun = run_cli("run", "--suite", str(suite), "--out", str(out))   # a new process, as after a real kill
    assert rerun.returncode == 0, rerun.stderr
    cached_videos, generated, cached_records, computed = map(int, LOG.search(rerun.stdout).groups())
    assert (cached_videos, generated) == (done, 8 - done)          # nothing finished is generated again
    assert cached_records == records                               # nor scored again
    assert (out / "per_video.csv").read_bytes() == (reference / "per_video.csv").read_bytes()
    scores = pd.read_csv(out / "per_video.csv").query("status == 'ok'")["score"]   # real, varied numbers compared
    assert len(scores) > 0 and scores.notna().all() and scores.nunique() > 1
    measured = list(MEASURED_COLUMNS)
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv").drop(columns=measured),
                                  pd.read_csv(reference / "summary.csv").drop(columns=measured))
    assert (out / "COMPLETE").is_file()


def test_a_second_run_into_a_locked_directory_refuses_in_one_line(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        second = run_cli("run", "--suite", str(suite), "--out", str(out))
    assert second.returncode == 2
    assert "locked" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert not (out / "per_video.csv").exists()


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.csv"
    atomic_write_text(target, "previous complete table\n")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", lambda fd: full(fd, b""))
    with pytest.raises(OutputError, match="disk full") as info:
        atomic_write_text(target, "new table\n")
    assert "\n" not in str(info.value) and str(target) in str(info.value)
    assert target.read_text() == "previous complete table\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]      # no temp file left behind


def test_a_state_saved_before_a_config_field_existed_still_resumes():
    """train's resume check reads a stored model config as M4VConfig reads an old config.json: a field added since
    (at the value the code had before it) is no difference; a real difference still is."""
    from benchmarks.train import _same_config
    from m4v.config import M4VConfig

    current = {"batch": 32, "model": M4VConfig.tiny().to_dict()}
    current = json.loads(json.dumps(current))
    older = json.loads(json.dumps(current))
    del older["model"]["pooled_text_feature"]                     # saved before the field existed
    assert _same_config(older, current)
    assert not _same_config({**older, "batch": 16}, current)
    changed = json.loads(json.dumps(older))
    changed["model"]["hidden_size"] = 96
    assert not _same_config(changed, current)
    assert not _same_config({**older, "model": {"hidden_size": "x"}}, current)
