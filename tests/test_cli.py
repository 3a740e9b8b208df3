"""m4v-bench command line: info and bench-scan (on a tiny size; the real sizes are benchmarks, not tests)."""

import json

import pandas as pd
import pytest

from benchmarks import cli, scan_bench


def test_info_lists_backends(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "selective_scan backends" in out and "torch" in out and "auto             -> cpu" in out


def test_bench_scan_rows_and_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(scan_bench.SIZES, "small", (1, 8, 64, 4))
    assert cli.main(["bench-scan", "--sizes", "small", "--repeats", "1", "--device", "cpu",
                     "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "bench_scan.csv")
    assert set(df["backend"]) == {"reference", "cpu"}
    assert set(df["pass"]) == {"forward", "forward+backward"}
    cpu = df[df["backend"] == "cpu"]
    assert (cpu["max_abs_err"] < 1e-4).all() and (cpu["seconds"] > 0).all()
    # median with min-max of the timed repeats after a warm-up (one repeat: no interval)
    assert (df["seconds_min"] <= df["seconds"]).all() and (df["seconds"] <= df["seconds_max"]).all()
    assert (df["repeats"] == 1).all() and df["seconds_ci_low"].isna().all()
    assert (cpu["warmup"] == 1).all()
    payload = json.loads((tmp_path / "bench_scan.json").read_text())
    assert {"git_commit", "versions", "config", "seeds"} <= set(payload["provenance"])
    assert {"torch_threads", "cpu_model", "load_avg_1m"} <= set(payload["machine_load"]["start"])
    assert set(payload["machine_load"]["end"]) == set(payload["machine_load"]["start"])
    assert "| backend" in capsys.readouterr().out


def test_check_targets_flags_slow_or_wrong_backends():
    df = pd.DataFrame([
        {"size": "paper", "pass": "forward", "backend": "cpu", "speedup_vs_reference": 10.0, "max_abs_err": 1e-2},
        {"size": "paper", "pass": "forward", "backend": "reference", "speedup_vs_reference": 1.0,
         "max_abs_err": 0.0},
    ])
    failures = scan_bench.check_targets(df)
    assert len(failures) == 2 and "speedup" in failures[0] and "err" in failures[1]


def test_bench_scan_cuda_without_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert cli.main(["bench-scan", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_train_on_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    out = tmp_path / "run"
    assert cli.main(["train", "--model", "dit-tiny", "--device", "cuda", "--out", str(out), "--steps", "1"]) == 2
    assert "--device cuda" in capsys.readouterr().err and not out.exists()
