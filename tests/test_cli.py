"""m4v-bench command line: info and bench-scan (on a tiny size; the real sizes are benchmarks, not tests)."""

import json

import pandas as pd
import pytest

from benchmarks import cli
from benchmarks.perf import scan_bench


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


def test_the_parser_imports_neither_torch_nor_the_evaluators():
    """`m4v-bench --help` answers at once: building the parser (and asking for run's help) imports no torch,
    open_clip, pandas or evaluator; a command imports what it runs (benchmarks/perf/cli_bench.py times it)."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "import benchmarks.cli as cli\n"
            "parser = cli.build_parser()\n"
            "for argv in (['--help'], ['run', '--help'], ['generate', '--help'], ['train', '--help']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "        parser.parse_args(argv)\n"
            "heavy = ('torch', 'open_clip', 'pandas', 'scipy', 'evaluators', 'm4v.recipes')\n"
            "heavy = [m for m in heavy if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_registry_flags_are_checked_when_parsed(capsys):
    """A registry's names (train's recipes) are checked at parse time, as argparse choices were: exit 2, one line
    naming the flag and the known names."""
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["train", "--model", "no-such-recipe", "--out", "r"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --model: invalid choice: 'no-such-recipe'" in err and "'m4v-tiny'" in err


def test_cli_bench_times_help(tmp_path):
    from benchmarks.perf import cli_bench

    assert cli_bench.main(["--repeats", "1", "--warmup", "0", "--out", str(tmp_path / "b.json")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["command"] for r in rows] == ["m4v-bench --help", "m4v-bench run --help"]
    assert all(r["min_s"] <= r["median_s"] <= r["max_s"] for r in rows)


def test_help_texts_name_what_the_registries_hold():
    """The parser names a few registries' contents without importing them; they stay in step."""
    from benchmarks.reporting import plan
    from evaluators.video import WRITABLE_SUFFIXES
    from m4v.recipes import RECIPES

    sub = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    # whitespace dropped: argparse wraps help lines, also at a name's hyphens
    train, generate, plan_help = ("".join(sub[c].format_help().split()) for c in ("train", "generate", "plan"))
    assert all(name in train for name in RECIPES)
    assert all(suffix in generate for suffix in WRITABLE_SUFFIXES)
    assert f"default{plan.ALPHA}" in plan_help and f"default{plan.POWER:g}" in plan_help
