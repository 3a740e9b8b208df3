"""`m4v-bench run`: suites (built in and TOML), one data flow from checkpoint to tables, the results layout,
bit-identical reruns, the cache, checkpoints given as directories, safe file names."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.core.errors import SuiteError
from benchmarks.reporting.writers import MEASURED_COLUMNS
from benchmarks.run.runner import GENERATION_COLUMNS, ROW_COLUMNS, safe_name
from benchmarks.run.suites import BUILT_IN, get_suite, load_suite_file

FAST_SUITE = """
name = "fast-test"
models = {models}
prompts = "world"
per_kind = 1
batch = 8
evaluators = ["world_colour_shape", "world_count", "world_motion", "temporal_flickering", "clip_score", "compute"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""


def write_suite(tmp_path, models=("m4v-tiny", "dit-tiny"), text=FAST_SUITE):
    path = tmp_path / "suite.toml"
    path.write_text(text.format(models=json.dumps(list(models))))
    return path


def test_built_in_suites_are_registered_with_the_default_first():
    assert {"quality-vs-compute", "vbench-standard", "vbench-fast", "paper-table4", "flops-curve",
            "external"} <= set(BUILT_IN)
    default = get_suite("quality-vs-compute")
    assert default.models == ("m4v-tiny", "m4v-tiny-reward", "dit-tiny") and default.full["per_kind"] == 20
    fast = get_suite("vbench-fast")
    assert fast.prompt_limit == 50 and set(fast.evaluators) >= {"overall_consistency", "aesthetic_quality",
                                                              "imaging_quality"}
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        get_suite("nope")


@pytest.mark.parametrize("text, message", [
    ('name = "x"\nper_kind = "three"\n', "key 'per_kind' must be an integer"),
    ('name = "x"\nmodles = ["m4v-tiny"]\n', "unknown key 'modles'"),
    ('per_kind = 2\n', "missing key 'name'"),
    ('name = "x"\n[sampling]\nsteps = [8, 8]\n', "key 'sampling.steps' must be 3 positive integers"),
    ('name = "x"\n[sampling]\nheight = 50\n', "multiples of 32"),
    ('name = "x"\n[sampling]\nguidance = nan\n', "sampling.guidance"),
    ('name = "x"\nevaluators = ["no_such_metric"]\n', "unknown \\['no_such_metric'\\]"),
    ('name = "x"\nsamples = 0\n', "key 'samples' must be an integer in \\[1, 1000\\]"),
    ('name = "x\n', "not valid TOML"),
])
def test_bad_toml_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message) as info:
        load_suite_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_toml_suite_round_trips_its_fields(tmp_path):
    suite = load_suite_file(write_suite(tmp_path))
    assert suite.models == ("m4v-tiny", "dit-tiny") and suite.sampling.steps == (1, 1, 1)
    assert suite.sampling.frames == 9 and suite.evaluators[0] == "world_colour_shape"
    assert suite.hash() == load_suite_file(write_suite(tmp_path)).hash()
    assert suite.hash() != suite.with_overrides(seed=1).hash()


def test_run_writes_one_table_and_reruns_bit_identically(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert main(["run", "--suite", str(suite), "--out", str(out_a), "--no-cache"]) == 0
    assert main(["run", "--suite", str(suite), "--out", str(out_b), "--no-cache"]) == 0
    for name in ("per_video.csv", "summary.csv", "generation.csv", "results.json", "report.md", "pareto.png",
                 "COMPLETE"):
        assert (out_a / name).is_file(), name
    per_video = pd.read_csv(out_a / "per_video.csv")
    assert list(per_video.columns) == ROW_COLUMNS
    assert list(pd.read_csv(out_a / "generation.csv").columns) == GENERATION_COLUMNS
    # Every world prompt of both models scored; a check only on the prompts written for it.
    assert set(per_video["model"]) == {"m4v-tiny", "dit-tiny"}
    ok = per_video[per_video["status"] == "ok"]
    counts = ok.groupby(["model", "dimension"]).size().unstack()
    assert (counts["world_count"] == 8).all() and (counts["world_motion"] == 1).all()
    assert (counts["compute"] == 8).all()
    # temporal_flickering on its one static prompt: scored, or declined by VBench's static filter
    flicker = per_video[per_video["dimension"] == "temporal_flickering"]
    assert (flicker.groupby("model").size() == 1).all() and flicker["status"].isin(["ok", "declined"]).all()
    assert ok["score"].notna().all() and per_video.loc[per_video["status"] != "ok", "score"].isna().all()
    assert ok["score"].nunique() > 1   # the bit-identity below compares varied numbers, not one constant
    # Videos in VBench naming, readable by the evaluators' reader, one per (model, prompt, sample).
    from evaluators.video import read_video

    first = ok.iloc[0]
    video = read_video(out_a / first["video"])
    assert first["video"].endswith(f"{safe_name(first['prompt'])}-0.mp4") and video.frames.shape == (9, 64, 64, 3)
    # Bit-identical scores across two uncached runs; only the measured seconds / memory may differ.
    assert (out_a / "per_video.csv").read_bytes() == (out_b / "per_video.csv").read_bytes()
    a, b = pd.read_csv(out_a / "summary.csv"), pd.read_csv(out_b / "summary.csv")
    pd.testing.assert_frame_equal(a.drop(columns=list(MEASURED_COLUMNS)), b.drop(columns=list(MEASURED_COLUMNS)))
    # Summary: the dimension's own aggregate with an interval that holds it; compute per video from the counters.
    row = a.set_index("model").loc["m4v-tiny"]
    assert row["world_count_ci_low"] <= row["world_count"] <= row["world_count_ci_high"]
    assert row["world_count"] == pytest.approx(ok[(ok["model"] == "m4v-tiny")
                                                  & (ok["dimension"] == "world_count")]["score"].mean())
    assert row["compute"] == pytest.approx(row["tflops_per_video"]) and row["mixer_tflops_per_video"] > 0
    # The one VBench dimension here is temporal flickering, weight-free and VBench's own: no substitute in it.
    # temporal_flickering is no VBench dimension here: its static filter ran on OpenCV flow, not RAFT
    assert row["world_count_n"] == 8 and row["vbench_dimensions"] == 0
    results = json.loads((out_a / "results.json").read_text())
    prov = results["provenance"]
    assert prov["suite"]["name"] == "fast-test" and prov["suite_hash"] and prov["git_commit"]
    assert len(prov["checkpoints"]["m4v-tiny"]["sha256"]) == 64 and len(results["rows"]) == 2
    assert "NaN" not in (out_a / "results.json").read_text()


def test_rerun_reads_every_sample_from_the_cache(tmp_path, capsys):
    suite = write_suite(tmp_path, models=("dit-tiny",))
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    first = (out / "per_video.csv").read_bytes()
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "videos: 8 from the cache, 0 generated" in log and ", 0 computed" in log
    assert (out / "per_video.csv").read_bytes() == first


def test_samples_made_under_other_cpu_kernels_are_not_reused(tmp_path, capsys, monkeypatch):
    # AVX2 and AVX-512 kernels round differently and generation amplifies it (docs/research.md): a cached
    # sample is only the answer for the ISA that made it.
    import benchmarks.run.runner

    suite = write_suite(tmp_path, models=("dit-tiny",))
    out, cache = tmp_path / "run", ["--cache-dir", str(tmp_path / "cache")]
    assert main(["run", "--suite", str(suite), "--out", str(out), *cache]) == 0
    capsys.readouterr()
    monkeypatch.setattr(benchmarks.run.runner, "cpu_kernels", lambda: "SOME_OTHER_ISA")
    assert main(["run", "--suite", str(suite), "--out", str(out), *cache]) == 0
    assert "videos: 0 from the cache, 8 generated" in capsys.readouterr().out
    device = json.loads((out / "results.json").read_text())["provenance"]["device"]
    assert device["cpu_kernels"] and device["processor"]


def test_a_save_pretrained_directory_is_a_model(tmp_path):
    from m4v.recipes import weights_path

    mine = tmp_path / "my-checkpoint"
    mine.mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copy(weights_path("dit-tiny") / name, mine / name)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(write_suite(tmp_path, models=(str(mine),))), "--out", str(out),
                 "--no-cache"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["model"]) == ["my-checkpoint"]
    assert np.isnan(summary["trained_steps"].iloc[0])        # no training.json copied: nothing claimed


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--suite", str(write_suite(tmp_path, models=(str(empty),))), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(empty / "config.json") in err


def test_prompt_names_cannot_escape_the_output_directory():
    assert "/" not in safe_name("../../etc/passwd") and not safe_name("../x").startswith(".")
    assert safe_name("a red square moves left") == "a red square moves left"
    long = safe_name("word " * 200)
    assert len(long.encode()) <= 200 and long != safe_name("word " * 201)   # the hash keeps them apart
    assert "\n" not in safe_name("two\nlines") and safe_name("") == "_"


def test_bootstrap_interval_matches_the_normal_approximation():
    from benchmarks.reporting.writers import bootstrap_interval
    from evaluators.registry import Record

    # 400 videos, half right: the 95% interval of a proportion is 0.5 +- 1.96 sqrt(0.25 / 400) = 0.5 +- 0.049
    records = [Record(str(i), "world_motion", float(i % 2), "x", 1) for i in range(400)]
    low, high = bootstrap_interval("world_motion", records)
    assert abs(low - 0.451) < 0.01 and abs(high - 0.549) < 0.01
    assert all(np.isnan(bootstrap_interval("world_motion", records[:1])))


def test_trained_steps_reads_runs_and_snapshots(tmp_path):
    from benchmarks.core.training_record import trained_steps

    snapshot, bare = tmp_path / "step-000500", tmp_path / "copied"
    snapshot.mkdir()
    bare.mkdir()
    (snapshot / "training.json").write_text(json.dumps({"model": "dit-tiny", "step": 500, "of_steps": 2000}))
    assert trained_steps(snapshot) == {"trained_steps": 500, "of_steps": 2000}
    assert all(np.isnan(v) for v in trained_steps(bare).values())


def test_snapshot_directories_are_named_by_their_run(tmp_path):
    """Two runs' step-015000 snapshots are two models: `run@step-015000`, not `step-015000` and a #1 twin."""
    from benchmarks.generators import resolve_generators
    from m4v.recipes import weights_path

    dirs = [tmp_path / run / "snapshots" / "step-015000" for run in ("none", "registers")]
    for d in [*dirs, tmp_path / "plain"]:
        shutil.copytree(weights_path("dit-tiny"), d)
    names = [g.name for g in resolve_generators([*map(str, dirs), str(tmp_path / "plain"), "dit-tiny"])]
    assert names == ["none@step-015000", "registers@step-015000", "plain", "dit-tiny"]


def test_inference_and_evaluators_do_not_import_training_code():
    import subprocess
    import sys

    code = ("import sys, m4v.text_to_video, evaluators, benchmarks.run.runner, benchmarks.reporting.writers; "
            "print(sorted(m for m in sys.modules if m.startswith(('m4v.recipes', 'm4v.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    code = "import sys, evaluators; print(sorted(m for m in sys.modules if m.startswith('benchmarks')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_suite_prompts_are_unique_so_names_and_pairs_are():
    from benchmarks.run.suites import prompt_entries

    entries = prompt_entries(get_suite("quality-vs-compute").with_overrides(per_kind=20))
    prompts = [e["prompt_en"] for e in entries]
    assert len(prompts) == len(set(prompts)) and len(prompts) > 100
    assert len({safe_name(p) for p in prompts}) == len(prompts)      # one video file per prompt and sample
