"""Issue "Hardening 2", items 6, 8, 9, through the real CLI: one bounds table for every number wherever it enters
(flags, TOML suites, `train --option`, compare, stage-quality, training.json, state.pt) and an up-front memory and
work estimate; `train` validates what OUT holds before writing anything; `compare` reads only complete, unlocked
runs, checks results.json, and pairs two `eval` outputs by video."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.cli import main
from benchmarks.core import flags
from benchmarks.core.outputs import OutputLock

TINY = """
name = "bounds"
models = ["control:static"]
per_kind = 1
batch = 4
evaluators = ["world_count"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""
PROGRESS = re.compile(r"\d+%\|")   # a tqdm bar (loading weights, batches): not a message


def refused(argv, capsys, *needles) -> str:
    """main(argv) is exit 2 with one line on stderr (no traceback) holding every needle; -> that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip() and not PROGRESS.search(line)]   # no bars
    assert len(lines) == 1 and lines[0].startswith(f"m4v-bench {argv[0]}: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def parser_refused(argv, capsys, flag: str, bound: str) -> None:
    """argparse refuses the flag with its bound (exit 2) before anything runs."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: must be {bound}" in err and "Traceback" not in err, err


def digest(directory: Path) -> dict:
    """Every file under `directory` (the lock file aside) with its content hash."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


# ---- 6. one bounds table -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, bound", [
    ("[sampling]\nsteps = [100000, 1, 1]", "sampling.steps[0]", "an integer in [1, 1000]"),
    (f"per_kind = {2**63 - 1}", "per_kind", "an integer in [1, 10000]"),
    ("[sampling]\nframes = 1e8", "sampling.frames", "an integer in [1, 513]"),
    (f"samples = {2**63 - 1}", "samples", "an integer in [1, 1000]"),
    ("[sampling]\nheight = 65536", "sampling.height", "an integer in [32, 1024]"),
    ("[sampling]\nfps = 1e12", "sampling.fps", "a finite number in (0, 1000]"),
    ("[full]\nper_kind = 100000", "per_kind", "an integer in [1, 10000]"),     # --full's overrides too, at load
    ("samples_per_dimension = {color = 100000}", "samples_per_dimension.color", "an integer in [1, 1000]"),
])
def test_toml_numbers_out_of_bounds_are_refused_with_the_bound_before_any_work(text, key, bound, tmp_path, capsys):
    path = tmp_path / "suite.toml"
    path.write_text(f'name = "x"\nmodels = ["dit-tiny"]\n{text}\n')
    out = tmp_path / "out"
    refused(["run", "--suite", str(path), "--out", str(out)], capsys, str(path), f"key '{key}'", bound)
    assert not out.exists()


def test_flags_options_and_compare_use_the_same_bounds(tmp_path, capsys):
    parser_refused(["run", "--samples", str(2**63 - 1), "--out", str(tmp_path / "r")], capsys, "--samples",
                   flags.BOUNDS["samples"].describe())
    parser_refused(["stage-quality", "--steps", "100000000"], capsys, "--steps", "an integer in [1, 1000]")
    parser_refused(["stage-quality", "--prompts", "0"], capsys, "--prompts", "an integer in [1, 10000]")
    parser_refused(["train", "--model", "dit-tiny", "--out", str(tmp_path / "t"), "--stop-after", "1e9"], capsys,
                   "--stop-after", "an integer in [1, 10000000]")
    run = tmp_path / "bare"
    run.mkdir()
    pd.DataFrame({"model": ["m"], "prompt": ["p"], "seed": [0], "dimension": ["color"], "score": [1.0],
                  "status": ["ok"]}).to_csv(run / "per_video.csv", index=False)
    parser_refused(["compare", str(run), str(run), "--resamples", "1000000000"], capsys, "--resamples",
                   "an integer in [1, 100000]")
    parser_refused(["compare", str(run), str(run), "--resamples", "1e9"], capsys, "--resamples",
                   "an integer in [1, 100000]")
    parser_refused(["compare", str(run), str(run), "--alpha", "nan"], capsys, "--alpha", "a finite number in (0, 1)")
    parser_refused(["plan", "--from", str(run), "--power", "1.5"], capsys, "--power", "a finite number in (0, 1)")
    parser_refused(["bench-eval", "--frames", "1"], capsys, "--frames", "an integer in [2, 1024]")
    parser_refused(["bench-scan", "--warmup", "1e9"], capsys, "--warmup", "an integer in [0, 100]")
    assert not list(run.glob("compare.*"))
    # the same numbers, as a training record and a training state carry them, refused by the same entries
    with pytest.raises(ValueError, match=r"key 'step' must be an integer in \[1, 10000000\]"):
        flags.BOUNDS["steps"].check(-5, "state.pt: key 'step'")


def test_a_run_that_cannot_fit_memory_or_is_absurdly_large_is_refused_with_the_estimate(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.setattr(flags, "machine_memory", lambda: 4 * 2**30)   # a 4 GiB machine
    big = tmp_path / "big.toml"
    big.write_text(TINY.replace("batch = 4", "batch = 16").replace("frames = 9", "frames = 9\nheight = 1024\n"
                                                                                 "width = 1024"))
    out = tmp_path / "out"
    line = refused(["run", "--suite", str(big), "--out", str(out)], capsys, str(big), "'batch'", "8 video(s) of 9 "
                   "frames at 1024x1024", "GiB, more than this machine's 4.0 GiB")
    assert "need about 37.0 GiB" in line and not out.exists()
    many = tmp_path / "many.toml"
    many.write_text(TINY.replace("per_kind = 1", "per_kind = 200\nsamples = 1000"))
    refused(["run", "--suite", str(many), "--out", str(out)], capsys, str(many), "videos, more than the 100000")
    assert not out.exists()
    refused(["stage-quality", "--prompts", "4000"], capsys, "--prompts 4000", "need about", "4.0 GiB")


# ---- 8. train: validated before anything is written ----------------------------------------------------------

TRAIN = ["--steps", "1", "--batch", "2", "--dataset-size", "4", "--threads", "1", "--quiet"]


@pytest.mark.parametrize("option, needles", [
    ("batch=-5", ("--option batch", "an integer in [1, 65536]", "'-5'")),
    ("lr=nan", ("--option lr", "a finite number in (0, 10]", "'nan'")),
    ("batch=1e8", ("--option batch", "an integer in [1, 65536]", "'1e8'")),
    ("history_noise_ramp=99999999999", ("--option history_noise_ramp", "an integer in [0, 10000000]")),
    ("no_such=1", ("--option 'no_such=1'", "dit-tiny has no option 'no_such'")),
    ("stage_weights=1", ("--stage-weights",)),
])
def test_train_options_are_typed_and_bounded_before_anything_runs(option, needles, tmp_path, capsys):
    out = tmp_path / "run"
    refused(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN, "--option", option], capsys, *needles)
    assert not out.exists()   # no lock, no empty loss.csv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished one-step dit-tiny run (module-wide: each test works on its own copy)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN]) == 0
    return out


def test_garbage_state_and_records_are_refused_and_the_directory_is_left_as_it_was(trained, tmp_path, capsys):
    # state.pt with step -5 (it used to cut loss.csv to its header first), seconds NaN, a foreign config
    state = torch.load(trained / "state.pt", weights_only=True)
    for key, value, needle in (("step", -5, "key 'step' must be an integer in [1, 10000000], got -5"),
                               ("seconds", float("nan"), "key 'seconds' must be a finite number"),
                               ("config", 7, "key 'config'")):
        run = tmp_path / f"state-{key}"
        shutil.copytree(trained, run)
        (run / "COMPLETE").unlink()   # an unfinished run, which would resume
        torch.save({**state, key: value}, run / "state.pt")
        before = digest(run)
        refused(["train", "--model", "dit-tiny", "--out", str(run), *TRAIN, "--steps", "3"], capsys,
                str(run / "state.pt"), needle)
        assert digest(run) == before and len((run / "loss.csv").read_text().splitlines()) == 2
    # training.json of a finished run: [] (was AttributeError), invalid JSON (no file named), garbage counts
    for name, text, needle in (("list", "[]", "must be a JSON object"), ("invalid", "{not json", "not valid JSON"),
                               ("counts", json.dumps({"model": "dit-tiny", "steps": "many"}),
                                "key 'steps' must be an integer")):
        run = tmp_path / f"record-{name}"
        shutil.copytree(trained, run)
        (run / "training.json").write_text(text)
        before = digest(run)
        refused(["train", "--model", "dit-tiny", "--out", str(run), *TRAIN], capsys, str(run / "training.json"),
                needle)
        assert digest(run) == before
    # a garbage record never reaches a run's summary: a model directory holding one is refused before any work
    suite = tmp_path / "suite.toml"
    suite.write_text(TINY.replace('models = ["control:static"]', f'models = ["{tmp_path / "record-counts"}"]'))
    out = tmp_path / "summary"
    refused(["run", "--suite", str(suite), "--out", str(out)], capsys, "training.json", "key 'steps'")
    assert not (out / "per_video.csv").exists()


# ---- 9. compare: complete, unlocked runs; results.json checked; eval outputs by video ---------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny `run` (a control floor: no model to load, a second or two)."""
    root = tmp_path_factory.mktemp("compare")
    suite = root / "suite.toml"
    suite.write_text(TINY)
    assert main(["run", "--suite", str(suite), "--out", str(root / "run"), "--no-cache"]) == 0
    return root / "run"


def test_compare_reads_only_complete_unlocked_runs(run_dir, tmp_path, capsys):
    assert main(["compare", str(run_dir), str(run_dir), "--resamples", "50"]) == 0
    capsys.readouterr()
    incomplete = tmp_path / "incomplete"
    shutil.copytree(run_dir, incomplete)
    (incomplete / "COMPLETE").unlink()          # killed, failed, or being rerun
    refused(["compare", str(run_dir), str(incomplete)], capsys, str(incomplete), "incomplete run")
    refused(["compare", str(incomplete / "per_video.csv"), str(run_dir)], capsys, "incomplete run")
    locked = tmp_path / "locked"
    shutil.copytree(run_dir, locked)
    for stale in locked.glob("compare.*"):
        stale.unlink()
    with OutputLock(locked):                    # a `run` writing there now
        refused(["compare", str(run_dir), str(locked)], capsys, str(locked), "a run is writing there")
        refused(["compare", str(run_dir), str(run_dir), "--out", str(locked)], capsys, "another run is writing")
    assert not list(locked.glob("compare.*"))   # nothing written into the locked run


@pytest.mark.parametrize("results, needle", [
    ({"provenance": "x"}, "key 'provenance' must be a JSON object"),
    ({"provenance": {"suite": [1]}}, "key 'provenance.suite' must be a JSON object"),
    ([], "must be a JSON object"),
    ("{", "not a readable results.json"),
])
def test_a_malformed_results_json_is_one_line(results, needle, run_dir, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    (other / "results.json").write_text(results if isinstance(results, str) else json.dumps(results))
    from benchmarks.core.outputs import mark_complete

    # as its writer left it (COMPLETE's digests agree), so the file's own schema is what is refused (an edit made
    # after completion is refused before it is read: tests/test_hardening3.py)
    mark_complete(other, json.loads((other / "COMPLETE").read_text())["files"])
    refused(["compare", str(run_dir), str(other)], capsys, str(other / "results.json"), needle)


def test_two_eval_outputs_are_compared_by_video(tmp_path, capsys):
    from evaluators.video import write_video

    rng = np.random.default_rng(0)
    names = ["a cat-0", "a dog-0", "a cow-0", "a pig-0"]
    for side in ("a", "b"):
        for name in (names if side == "a" else names[::-1]):   # another order: pairing is by name, not row
            write_video(tmp_path / side / f"{name}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=8)
        assert main(["eval", "--videos", str(tmp_path / side), "--out", str(tmp_path / f"eval-{side}"),
                     "--dims", "temporal_flickering", "--no-cache"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "eval-a"), str(tmp_path / "eval-b"), "--resamples", "50"]) == 0
    table = pd.read_csv(tmp_path / "eval-b" / "compare.csv")
    assert table["n_pairs"].tolist() == [4] and table["n_unpaired"].tolist() == [0]
    # a missing video on one side is an unpaired sample named by its file, not a seed
    (tmp_path / "b" / "a pig-0.mp4").unlink()
    assert main(["eval", "--videos", str(tmp_path / "b"), "--out", str(tmp_path / "eval-c"), "--dims",
                 "temporal_flickering", "--no-cache"]) == 0
    capsys.readouterr()
    refused(["compare", str(tmp_path / "eval-a"), str(tmp_path / "eval-c")], capsys, "1 unpaired sample",
            "video a pig-0.mp4")
