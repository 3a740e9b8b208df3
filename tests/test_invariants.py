"""Whole-run invariants through the real CLI (issue 29): a model's rows depend only on that model. Adding, removing
or reordering models changes no model's rows; a renamed copy of a checkpoint scores identically; a shared cache
gives the run's own identity back; cached = uncached = resumed = 2-rank torchrun, with temporal_flickering's
per-(model, prompt) quota in play (the reconstruction "model" makes static videos, 7 samples of the static prompt)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmarks.cli import main
from benchmarks.reporting.writers import MEASURED_COLUMNS

REPO = Path(__file__).resolve().parent.parent
SUITE = """
name = "invariants"
models = {models}
prompts = "world"
per_kind = 1
batch = 4
samples_per_dimension = {{temporal_flickering = 7}}
evaluators = ["world_colour_shape", "world_count", "color", "temporal_flickering", "compute"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""
RECONSTRUCTION = "vae-tiny (reconstruction)"


def suite(tmp_path, models, name="suite.toml"):
    path = tmp_path / name
    path.write_text(SUITE.format(models=json.dumps(list(models))))
    return path


def run(tmp_path, models, out, *extra):
    assert main(["run", "--suite", str(suite(tmp_path, models)), "--out", str(out), *extra]) == 0
    return pd.read_csv(out / "per_video.csv"), pd.read_csv(out / "summary.csv").set_index("model")


def rows_of(per_video, model, as_name=None):
    """A model's rows without the run's labels that name it (model, video path), in a canonical order."""
    mine = per_video[per_video["model"] == model].drop(columns=["model", "video"])
    return mine.sort_values(["prompt", "sample", "dimension"]).reset_index(drop=True)


def summary_of(summary, model):
    return summary.loc[model].drop(labels=[c for c in MEASURED_COLUMNS if c in summary.columns])


def test_adding_reordering_and_renaming_models_changes_no_model_rows(tmp_path):
    copy = tmp_path / "m4v-copy"
    copy.mkdir()
    from m4v.checkpoint import weights_path

    for name in ("config.json", "model.safetensors"):
        shutil.copy(weights_path("m4v-tiny") / name, copy / name)
    alone, alone_summary = run(tmp_path, ["m4v-tiny"], tmp_path / "alone", "--no-cache")
    # another order, more models, the copy, and a cache shared with a run that stored m4v-tiny's records first
    cache = ["--cache-dir", str(tmp_path / "shared-cache")]
    run(tmp_path, ["m4v-tiny"], tmp_path / "first", *cache)
    many, many_summary = run(tmp_path, ["reconstruction:vae-tiny", str(copy), "dit-tiny", "m4v-tiny"],
                             tmp_path / "many", *cache)
    scores = alone.loc[alone["status"] == "ok", "score"]   # the compared rows hold real, varied numbers
    assert len(scores) > 0 and scores.notna().all() and scores.nunique() > 1
    pd.testing.assert_frame_equal(rows_of(alone, "m4v-tiny"), rows_of(many, "m4v-tiny"))
    pd.testing.assert_frame_equal(rows_of(alone, "m4v-tiny"), rows_of(many, "m4v-copy"))
    pd.testing.assert_series_equal(summary_of(alone_summary, "m4v-tiny"), summary_of(many_summary, "m4v-tiny"))
    trained = ["trained_steps", "of_steps"]   # read off the directory's training.json, which the copy lacks
    pd.testing.assert_series_equal(summary_of(many_summary, "m4v-tiny").drop(labels=trained),
                                   summary_of(many_summary, "m4v-copy").drop(labels=trained), check_names=False)
    # each row names its own model's video, and no model's rows appear twice
    assert all(v.startswith(f"videos/{m}/") for m, v in zip(many["model"], many["video"]))
    assert not many.duplicated(["model", "prompt", "sample", "dimension"]).any()
    # every model has the same applicable videos for every dimension
    counts = many.groupby(["dimension", "model"]).size().unstack()
    assert (counts.nunique(axis=1) == 1).all(), counts
    # the quota is per (model, prompt): the static reconstruction keeps 5 of its 7 static videos, whatever the
    # other models did before it in the run
    flicker = many[(many["dimension"] == "temporal_flickering") & (many["model"] == RECONSTRUCTION)]
    assert (flicker["status"] == "ok").sum() == 5 and (flicker["status"] == "declined").sum() == 2


COUNTS = re.compile(r"videos: \d+ from the cache, \d+ generated; records: \d+ from the cache, \d+ computed")


def test_cached_uncached_resumed_and_torchrun_give_one_table(tmp_path, master_port, one_thread, capsys):
    """The one-process runs in this process at torchrun's one thread a rank (a CPU float sum depends on threads); the
    2-rank run also writes the one-process videos and its log counts every rank's work, as one process counts it."""
    path = suite(tmp_path, ["reconstruction:vae-tiny", "dit-tiny"])
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "uncached"), "--no-cache"]) == 0
    counted = COUNTS.findall(capsys.readouterr().out)
    reference = (tmp_path / "uncached" / "per_video.csv").read_bytes()
    # a first run, then a rerun reading every cacheable record back (the quota state restored from them)
    for attempt in ("first", "rerun"):
        capsys.readouterr()
        assert main(["run", "--suite", str(path), "--out", str(tmp_path / "cached")]) == 0, attempt
        assert (tmp_path / "cached" / "per_video.csv").read_bytes() == reference, attempt
    assert ", 0 generated" in capsys.readouterr().out   # the rerun's
    # resumed: half of the finished samples lost (as after a kill), the rest read back
    samples = sorted((tmp_path / "cached" / "cache" / "samples").iterdir())
    for lost in samples[::2]:
        shutil.rmtree(lost)
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "cached")]) == 0
    assert (tmp_path / "cached" / "per_video.csv").read_bytes() == reference
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(master_port), "-m", "benchmarks.cli", "run", "--suite", str(path), "--out",
                          str(tmp_path / "two"), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "two" / "per_video.csv").read_bytes() == reference
    per_video = pd.read_csv(tmp_path / "two" / "per_video.csv")
    quota = per_video["reason"].fillna("").str.contains("stops after the first 5 static videos")
    assert quota.sum() == 2      # the reconstruction's 6th and 7th static videos, on whichever rank they ran
    # the same 28 video files (2 models x 14), and rank 0's log counts both ranks' videos and records
    videos = {d: sorted(p.relative_to(tmp_path / d).as_posix() for p in (tmp_path / d / "videos").rglob("*.mp4"))
              for d in ("uncached", "two")}
    assert len(videos["uncached"]) == 28 and videos["two"] == videos["uncached"]
    assert len(counted) == 1 and "28 generated" in counted[0] and COUNTS.findall(two.stdout) == counted


def test_check_against_its_own_baseline_is_exit_0_every_delta_0_and_complete(tmp_path):
    """`run --check-against` (the one-liner a model repository's CI runs): the same checkpoint against its own
    baseline is no regression, every paired delta 0, and the comparison's files are listed in COMPLETE."""
    base, new = tmp_path / "base", tmp_path / "new"
    run(tmp_path, ["dit-tiny"], base, "--no-cache")
    assert main(["run", "--suite", str(suite(tmp_path, ["dit-tiny"])), "--out", str(new), "--no-cache",
                 "--check-against", str(base)]) == 0
    compare = pd.read_csv(new / "compare.csv")
    assert len(compare) and (compare["delta"] == 0).all() and not compare["regressed"].any()
    listed = json.loads((new / "COMPLETE").read_text())["files"]
    assert {"compare.csv", "compare.json", "compare.html", "per_video.csv", "report.html"} <= set(listed)


def test_a_bug_is_exit_3_in_one_line_never_the_regression_code(monkeypatch, capsys):
    import benchmarks.cli as cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_info", broken)   # the command hits a bug
    assert cli.main(["info"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["m4v-bench info: internal error: KeyError: 'a bug' (rerun with --debug for the traceback)"]


def test_sigterm_is_one_line_exit_143_and_no_complete(tmp_path):
    import signal
    import time

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "run", "--suite",
                             str(suite(tmp_path, ["dit-tiny"])), "--out", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not list((out / "cache").glob("samples/*/generation.json")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    lines = [line for line in err.splitlines() if line.startswith("m4v-bench")]
    assert lines == ["m4v-bench run: terminated (SIGTERM); what finished is cached, rerun to resume"]
    assert "Traceback" not in err and not (out / "COMPLETE").exists()


def test_prompts_that_sanitise_to_one_name_get_their_own_files(tmp_path):
    from benchmarks.run.runner import safe_name, video_stems

    prompts = [" a red circle", "a red circle", "a red circle ", "a/b", "a_b", "a blue star"]
    stems = video_stems(prompts)
    assert len(set(stems.values())) == len(prompts)                  # nothing collides
    assert stems["a red circle"] == "a red circle" and stems["a blue star"] == "a blue star"   # VBench's names
    assert stems["a_b"] == "a_b" and stems["a/b"].startswith("a_b~")
    assert video_stems(list(reversed(prompts))) == stems             # stable: not order-dependent
    assert all(safe_name(s) == s for s in stems.values())            # still safe file names


def test_a_broken_model_never_scores(tmp_path, capsys):
    """Non-finite weights or config numbers are refused at load, naming the tensor or key (exit 2, nothing scored);
    non-finite latents during generation (a guidance that overflows) fail their samples, never score black."""
    from safetensors.torch import load_file, save_file

    from m4v.checkpoint import weights_path

    nan_weights, nan_config = tmp_path / "nan-weights", tmp_path / "nan-config"
    for directory in (nan_weights, nan_config):
        directory.mkdir()
        shutil.copy(weights_path("dit-tiny") / "config.json", directory / "config.json")
        shutil.copy(weights_path("dit-tiny") / "model.safetensors", directory / "model.safetensors")
    state = load_file(str(nan_weights / "model.safetensors"))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[name] = state[name].clone().fill_(float("nan"))
    save_file(state, str(nan_weights / "model.safetensors"))
    config = json.loads((nan_config / "config.json").read_text())
    config["rope_theta"] = float("nan")
    (nan_config / "config.json").write_text(json.dumps(config))     # json writes the NaN literal
    for directory, named in ((nan_weights, f"tensor {name!r}"), (nan_config, "key 'rope_theta'")):
        out = tmp_path / f"run-{directory.name}"
        assert main(["run", "--suite", str(suite(tmp_path, [str(directory)])), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and named in err[0] and ("non-finite" in err[0] or "not a finite" in err[0])
        assert not (out / "per_video.csv").exists()
    overflow = tmp_path / "overflow.toml"
    overflow.write_text(SUITE.format(models='["dit-tiny"]').replace("steps = [1, 1, 1]",
                                                                     "steps = [1, 1, 1]\nguidance = 1e308"))
    out = tmp_path / "overflow"
    assert main(["run", "--suite", str(overflow), "--out", str(out), "--no-cache"]) == 1
    per_video = pd.read_csv(out / "per_video.csv")
    assert (per_video["status"] == "failed").all() and per_video["score"].isna().all()
    assert per_video["reason"].str.contains("non-finite latents").all()


def test_videos_and_previews_follow_the_umask_as_every_other_output(tmp_path):
    import numpy as np

    from benchmarks.reporting.report_html import write_previews
    from evaluators.video import write_video

    old = os.umask(0o022)
    try:
        frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        video = write_video(tmp_path / "videos" / "m" / "p-0.mp4", frames, fps=8) or tmp_path / "videos/m/p-0.mp4"
        write_previews(tmp_path / "videos", [str(Path("m") / "p-0.mp4")], dest=tmp_path)
        modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*.mp4")}
    finally:
        os.umask(old)
    assert len(modes) == 2 and set(modes.values()) == {0o644}, modes
    assert Path(video).is_file()


def test_suites_that_would_run_nothing_or_ignore_a_key_are_one_line_and_exit_2(tmp_path, capsys):
    base = SUITE.format(models='["dit-tiny"]')
    cases = {"models": base.replace('models = ["dit-tiny"]', "models = []"),
             "evaluators": base.replace('evaluators = ["world_colour_shape"', 'evaluators = [] #'),
             "primary_metric": 'primary_metric = "colour_typo"\n' + base,
             "TOML": "x = " + "[" * 5000 + "]" * 5000 + "\n" + base}
    for key, text in cases.items():
        path = tmp_path / f"{key}.toml"
        path.write_text(text)
        out = tmp_path / f"out-{key}"
        assert main(["run", "--suite", str(path), "--out", str(out)]) == 2, key
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and key in err[0], err
        assert not out.exists()          # nothing written


def test_flags_that_would_be_ignored_are_refused(tmp_path, capsys, monkeypatch):
    import pytest
    import torch

    for argv in (["run", "--device", "banana", "--out", str(tmp_path / "a")],
                 ["stage-quality", "--threads", "0"]):
        with pytest.raises(SystemExit) as exit_info:     # argparse's one line, exit 2
            main(argv)
        assert exit_info.value.code == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "cuda"
    assert main(["run", "--suite", str(suite(tmp_path, ["dit-tiny"])), "--device", "cuda", "--out", str(out)]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not out.exists()


def test_eval_skips_hidden_partial_videos_a_killed_writer_left(tmp_path):
    import numpy as np

    from benchmarks.run.external import discover_videos
    from evaluators.video import write_video

    frames = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "a cat-0.mp4", frames, fps=8)
    write_video(tmp_path / ".a cat-0.x1y2.partial.mp4", frames, fps=8)   # write_video's temporary name
    assert [p.name for p in discover_videos(tmp_path)] == ["a cat-0.mp4"]
