"""`eval` on folders shaped as VBench's samplers write them (issue 37 §1-2): 5 samples a prompt, 25 for
temporal_flickering's, many prompts, names with spaces, punctuation, hyphens and non-ASCII text. The files scored are
checked against VBench's own selection code (vbench 0.1.5: `VBench.build_full_info_json` + `load_dimension_info` in
standard mode, `cli/static_filter.py`'s glob for temporal_flickering, `get_prompt_from_filename` in custom mode).
Run through the CLI as a user runs it, under whichever pandas / numpy the interpreter has (tox -e tests-lowest runs
this file under the lowest supported ones)."""

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from in_process import cli
from module_stubs import stub_module

from evaluators.video import write_video

REPO = Path(__file__).resolve().parents[1]
FLICKER = "a candle in a still room, ¿quién? 🕯"                    # temporal_flickering: 25 samples
MOTION = "a dog, Ukiyo-e style: it's (very) fast & loud"           # a hyphen inside the prompt
OVERALL = "émigré  two  spaces; 猫 on a roof"
PLAIN = [f"plain prompt number {k}" for k in range(5)]             # many prompts
FULL_INFO = ([{"prompt_en": FLICKER, "dimension": ["temporal_flickering"]},
              {"prompt_en": MOTION, "dimension": ["subject_consistency", "dynamic_degree", "motion_smoothness"]},
              {"prompt_en": OVERALL, "dimension": ["overall_consistency", "aesthetic_quality", "imaging_quality"]},
              {"prompt_en": "A person is never sampled", "dimension": ["human_action"]}]
             + [{"prompt_en": p, "dimension": ["dynamic_degree"]} for p in PLAIN])
# names VBench's standard mode never reads: an index past its range, "-01", no index, a prompt not in the JSON
IGNORED = [f"{MOTION}-5.mp4", f"{MOTION}-01.mp4", f"{OVERALL}.mp4", f"{FLICKER}-25.mp4", "my own clip-0.mp4",
           "alley-7.mp4"]


def vbench(name):
    """A vbench module, its decoder import (never run here) stubbed; skipped where vbench is not installed."""
    if importlib.util.find_spec("vbench") is None:
        pytest.skip("vbench 0.1.5 not installed (make test installs it)")
    stub_module("decord", VideoReader=None, cpu=None)
    return __import__(name, fromlist=["_"])


def write_folder(root: Path, names: list[str]) -> None:
    """Tiny mp4s (16 frames of 64x64): a still frame with faint noise for the flickering prompt (VBench's static
    filter keeps it), moving noise for the others; one file encoded per kind and copied (selection is the test)."""
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 16, axis=0)
    moving = rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    write_video(root / ".still.mp4", still, fps=8)
    write_video(root / ".moving.mp4", moving, fps=8)
    for name in names:
        shutil.copy(root / (".still.mp4" if name.startswith(FLICKER) else ".moving.mp4"), root / name)
    for kind in (".still.mp4", ".moving.mp4"):
        (root / kind).unlink()


def eval_cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return cli("eval", *args, cwd=cwd)


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vbench_folder")
    videos = root / "videos"
    read = ([f"{FLICKER}-{i}.mp4" for i in range(25)] + [f"{MOTION}-{i}.mp4" for i in range(5)]
            + [f"{OVERALL}-{i}.mp4" for i in range(5)] + [f"{p}-{i}.mp4" for p in PLAIN for i in range(5)])
    write_folder(videos, read + IGNORED)
    prompts = root / "full_info.json"
    prompts.write_text(json.dumps(FULL_INFO, ensure_ascii=False), encoding="utf-8")
    done = eval_cli("--videos", str(videos), "--prompts", str(prompts), "--dims",
                    "temporal_flickering,dynamic_degree,frame_consistency", "--out", str(root / "out"))
    return types.SimpleNamespace(root=root, videos=videos, prompts=prompts, read=read, done=done, out=root / "out")


def test_standard_folder_runs_whole(standard_run):
    """Exit 0, every output and COMPLETE, the gallery names every sample (pandas 3 turned the missing seed into NaN
    and report.html failed on it)."""
    done, out = standard_run.done, standard_run.out
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("per_video.csv", "summary.csv", "results.json", "report.md", "report.html", "COMPLETE"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "seed none, sample 24" in page and "nan" not in page.replace("nanos", "").lower().split("<script")[0]
    per_video = pd.read_csv(out / "per_video.csv", keep_default_na=False)
    assert set(per_video["prompt"]) == {FLICKER, MOTION, OVERALL, *PLAIN}


def test_standard_mode_scores_exactly_what_vbench_reads(standard_run, tmp_path):
    """Per dimension, the files scored (ok or declined) are the ones VBench's own code reads: build_full_info_json
    + load_dimension_info for dynamic_degree, the static filter's sorted glob for temporal_flickering (VBench's
    sampling protocol: 25 a prompt, so -25 is left out)."""
    init, utils = vbench("vbench"), vbench("vbench.utils")
    per_video = pd.read_csv(standard_run.out / "per_video.csv", keep_default_na=False)
    scored = {d: sorted(Path(v).name for v in part["video"]) for d, part in per_video.groupby("dimension")}

    bench = init.VBench("cpu", str(standard_run.prompts), str(tmp_path))
    info = bench.build_full_info_json(str(standard_run.videos), "run", ["dynamic_degree"], mode="vbench_standard")
    theirs, _ = utils.load_dimension_info(info, "dynamic_degree", "en")
    assert scored["dynamic_degree"] == sorted(Path(v).name for v in theirs)
    assert len(theirs) == 5 * (1 + len(PLAIN))

    flicker_prompts = [e["prompt_en"] for e in FULL_INFO if "temporal_flickering" in e["dimension"]]
    filter_input = [Path(p).name for p in sorted(glob.glob(os.path.join(glob.escape(str(standard_run.videos)),
                                                                        "*.mp4")))
                    if utils.get_prompt_from_filename(p) in flicker_prompts]
    assert f"{FLICKER}-25.mp4" in filter_input                       # VBench's glob; 25 samples is its protocol
    assert scored["temporal_flickering"] == sorted(n for n in filter_input if n != f"{FLICKER}-25.mp4")
    # the harness's own metric: every file VBench reads, once
    assert scored["frame_consistency"] == sorted(standard_run.read)


def test_static_filter_keeps_the_first_five_in_vbench_order(standard_run):
    """All 25 flickering videos are static: VBench's filter visits them in sorted name order (-0, -1, -10, -11,
    -12, ...) and keeps the first 5; the 20 others are declined unexamined."""
    per_video = pd.read_csv(standard_run.out / "per_video.csv", keep_default_na=False)
    flicker = per_video[per_video["dimension"] == "temporal_flickering"]
    kept = sorted(Path(v).name for v in flicker.loc[flicker["status"] == "ok", "video"])
    assert kept == [f"{FLICKER}-{i}.mp4" for i in (0, 1, 10, 11, 12)]
    assert (flicker["status"] == "declined").sum() == 20


def test_ignored_files_are_one_line(standard_run):
    lines = [ln for ln in standard_run.done.stderr.splitlines() if "files ignored" in ln]
    assert len(lines) == 1, standard_run.done.stderr[-2000:]
    assert f"{len(IGNORED)} of {len(IGNORED) + len(standard_run.read)} files ignored" in lines[0]
    assert "3 not named <prompt>-<index>" in lines[0] and "3 past the indices" in lines[0]
    per_video = pd.read_csv(standard_run.out / "per_video.csv", keep_default_na=False)
    assert not {Path(v).name for v in per_video["video"]} & set(IGNORED)


def test_a_folder_with_no_file_vbench_reads_is_one_line(tmp_path, capsys):
    from benchmarks.cli import main

    write_folder(tmp_path / "v", ["my own clip-0.mp4", f"{MOTION}-9.mp4"])
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(FULL_INFO), encoding="utf-8")
    assert main(["eval", "--videos", str(tmp_path / "v"), "--prompts", str(prompts), "--dims", "frame_consistency",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "none of its 2 files" in err


CUSTOM = [f"{MOTION}-0.mp4", f"{MOTION}-1.mp4", "plain name.mp4", "x-01.mp4", "emoji 🎈 ¿sí?-3.mp4",
          "A person is running-0.mp4", "a red car_1-2.mp4"]


def test_custom_mode_scores_every_file_with_vbench_prompts(tmp_path):
    """No --prompts: every file, the prompt from its name by VBench's get_prompt_from_filename, overall_consistency
    on the file-name prompt (it scored nothing before), two samples of a prompt (the pandas-3 crash)."""
    utils = vbench("vbench.utils")
    init = vbench("vbench")
    write_folder(tmp_path / "v", CUSTOM)
    done = eval_cli("--videos", str(tmp_path / "v"), "--dims", "frame_consistency,overall_consistency",
                    "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "files ignored" not in done.stderr
    per_video = pd.read_csv(tmp_path / "out" / "per_video.csv", keep_default_na=False)
    assert (per_video["status"] == "ok").all()
    for dim in ("frame_consistency", "overall_consistency"):
        part = per_video[per_video["dimension"] == dim]
        assert sorted(Path(v).name for v in part["video"]) == sorted(CUSTOM), dim
    prompts = {Path(v).name: p for v, p in zip(per_video["video"], per_video["prompt"])}
    # VBench's own custom-input listing of the same folder
    info = init.VBench("cpu", "", str(tmp_path / "vb")).build_full_info_json(
        str(tmp_path / "v"), "run", ["overall_consistency"], mode="custom_input")
    theirs = {Path(e["video_list"][0]).name: e["prompt_en"] for e in json.loads(Path(info).read_text())}
    assert prompts == theirs == {n: utils.get_prompt_from_filename(n) for n in CUSTOM}
    assert prompts[f"{MOTION}-1.mp4"] == MOTION and prompts["x-01.mp4"] == "x"
    assert (tmp_path / "out" / "COMPLETE").is_file()


def test_custom_mode_default_dimensions_are_vbench_custom_input_ones():
    """Without --dims, custom input runs every VBench dimension VBench runs in that mode (temporal_style and
    overall_consistency included: their prompt is the file name) whose backbone is at hand, and none it refuses."""
    from benchmarks.run.runner import build_evaluators
    from evaluators import EVALUATORS
    from evaluators.vbench.protocol import CUSTOM_INPUT_DIMENSIONS, DIMENSIONS

    init = vbench("vbench")
    bench = init.VBench("cpu", "", "/tmp/unused-vbench-out")
    allowed = []
    for dim in DIMENSIONS:
        try:
            bench.check_dimension_requires_extra_info([dim])
            allowed.append(dim)
        except AssertionError:
            pass
    assert tuple(allowed) == CUSTOM_INPUT_DIMENSIONS
    assert list(DIMENSIONS) == bench.build_full_dimension_list()
    chosen = build_evaluators(None, [], with_prompts=True, custom_input=True)
    standard = build_evaluators(None, [], with_prompts=True)   # every dimension whose default backbone is at hand
    vbench_dims = {d for d in chosen if EVALUATORS[d].group == "vbench"}
    assert vbench_dims == {d for d in standard if d in CUSTOM_INPUT_DIMENSIONS}
    assert {"temporal_style", "overall_consistency", "temporal_flickering"} <= vbench_dims
    assert "clip_score" in chosen


def test_key_text_is_the_same_under_pandas_2_and_3():
    from benchmarks.reporting.report_html import key_text

    column = pd.Series([None, np.nan, 1.0, 2, "7", "a b"], dtype=object)
    assert key_text(column).tolist() == ["", "", "1", "2", "7", "a b"]
    assert key_text(pd.Series([0.0, np.nan])).tolist() == ["0", ""]


def test_report_and_compare_read_the_folder_run_back(standard_run, tmp_path):
    """`report` rebuilds report.html from the CSVs (the seed column reads back empty) and `compare` pairs the run
    with itself by video file name: both whole, under this interpreter's pandas."""
    out = standard_run.out
    done = cli("report", out)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seed none, sample 24" in (out / "report.html").read_text(encoding="utf-8")
    done = cli("compare", out, out, "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr[-2000:]
    compared = pd.read_csv(tmp_path / "cmp" / "compare.csv").set_index("dimension")
    assert compared.loc["dynamic_degree", "n_pairs"] == 5 * (1 + len(PLAIN))   # the files VBench reads, paired
    assert compared.loc["frame_consistency", "n_pairs"] == len(standard_run.read)


def test_custom_mode_refuses_the_dimensions_vbench_refuses(tmp_path, capsys):
    from benchmarks.cli import main

    write_folder(tmp_path / "v", ["a red car-0.mp4"])
    assert main(["eval", "--videos", str(tmp_path / "v"), "--dims", "frame_consistency,color", "--out",
                 str(tmp_path / "out")]) == 2
    assert "--dims color: needs a prompt file's auxiliary_info" in capsys.readouterr().err
    assert not (tmp_path / "out" / "per_video.csv").exists()
