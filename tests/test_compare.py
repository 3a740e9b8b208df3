"""m4v-bench compare: pairing, the statistics against scipy / hand computations, and the exit codes."""

import json
from pathlib import Path

import in_process
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks import cli
from benchmarks.compare import CompareOptions, compare_dirs, parse_tolerances
from benchmarks.core.errors import CompareError
from benchmarks.stats import holm
from benchmarks.stats import mean_interval as bootstrap_interval

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [f"a red square moving right {i}" for i in range(15)] + ["None", "NA"]  # strings pandas likes to eat
SEEDS = (0, 1)
SUITE = {"name": "test-suite", "models": ["m4v-tiny"], "prompts": PROMPTS, "seeds": list(SEEDS),
         "sampling": {"frames": 16, "height": 64, "width": 64, "steps": 10, "guidance": 7.0},
         "evaluators": ["subject_consistency", "color", "compute"]}


def base_frame(models=("m4v-tiny",), seed=0) -> pd.DataFrame:
    """One deterministic run: a continuous metric, a 0/1 metric and compute (lower is better) per sample."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        for sample, prompt in enumerate(PROMPTS):
            for s in SEEDS:
                scores = {"subject_consistency": rng.uniform(0.80, 0.95), "color": float(rng.random() < 0.6),
                          "compute": 1.5 + rng.uniform(0.0, 0.01)}
                for dimension, score in scores.items():
                    rows.append({"model": model, "prompt": prompt, "seed": s, "sample": sample,
                                 "dimension": dimension, "score": score, "status": "ok", "reason": "",
                                 "backbone": "none", "faithful": True, "n_frames": 16,
                                 "video": f"{prompt}-{sample}.mp4", "extra": "{}"})
    return pd.DataFrame(rows)


def write_run(directory: Path, per_video: pd.DataFrame, suite=None) -> Path:
    """A run directory as `m4v-bench run` writes it: per_video.csv and results.json."""
    directory.mkdir(parents=True, exist_ok=True)
    per_video.to_csv(directory / "per_video.csv", index=False)
    suite = dict(SUITE if suite is None else suite, models=list(dict.fromkeys(per_video["model"])))
    provenance = {"command": "m4v-bench run", "git_commit": "abc", "versions": {}, "device": {}, "suite": suite,
                  "suite_hash": "h", "checkpoints": {}}
    (directory / "results.json").write_text(json.dumps({"provenance": provenance, "rows": []}))
    (directory / "COMPLETE").write_text(json.dumps({"files": ["per_video.csv", "results.json"]}))  # finished
    return directory


def shifted(df: pd.DataFrame, dimension: str, by: float, every: int = 5) -> pd.DataFrame:
    """`dimension` moved by `by` on all samples but every `every`-th (a consistent, not uniform, change)."""
    out = df.copy()
    rows = out.index[out["dimension"] == dimension]
    moved = [r for i, r in enumerate(rows) if i % every != 0]
    out.loc[moved, "score"] += by
    return out


def run_cli(*argv):
    return in_process.cli("compare", *argv)


def row(table: pd.DataFrame, dimension: str) -> pd.Series:
    return table[table["dimension"] == dimension].iloc[0]


# ---------------------------------------------------------------- exit codes, end to end

def test_cli_identical_runs_exit_0_and_write_nan_free_outputs(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", base_frame())
    result = run_cli(base, new, "--resamples", 200)
    assert result.returncode == 0, result.stderr
    assert "no significant regression" in result.stdout and "| model" in result.stdout
    table = pd.read_csv(new / "compare.csv")
    assert set(table["dimension"]) == {"subject_consistency", "color", "compute"}
    assert (table["delta"] == 0).all() and (table["p_value"] == 1).all() and (table["n_pairs"] == 34).all()

    def no_nan(token):
        raise AssertionError(f"bare {token} in compare.json")

    payload = json.loads((new / "compare.json").read_text(), parse_constant=no_nan)
    assert payload["provenance"]["exit_code"] == 0 and len(payload["rows"]) == 3


def test_cli_constructed_regression_exits_1_and_flags_that_metric(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", shifted(base_frame(), "subject_consistency", -0.03))
    result = run_cli(base, new, "--resamples", 200, "--out", tmp_path / "cmp")
    assert result.returncode == 1, result.stderr
    assert "regressed: m4v-tiny subject_consistency" in result.stdout
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(table.loc[table["regressed"], "dimension"]) == ["subject_consistency"]


def test_cli_unpaired_and_different_settings_exit_2_with_one_line(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", base_frame().drop(index=[4]))
    result = run_cli(base, new)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "1 unpaired sample" in result.stderr and "no row" in result.stderr
    assert not (new / "compare.csv").exists()

    other = write_run(tmp_path / "other", base_frame(), dict(SUITE, sampling=dict(SUITE["sampling"], steps=20)))
    result = run_cli(base, other)
    assert result.returncode == 2
    assert result.stderr.strip() == ("m4v-bench compare: different suites or settings: suite.sampling.steps: "
                                     "base 10, new 20")


# ---------------------------------------------------------------- verdicts

def test_regression_in_lower_is_better_compute_is_flagged(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", shifted(base_frame(), "compute", +0.2))
    comparison = compare_dirs(base, new, CompareOptions(n_resamples=200))
    assert comparison.exit_code == 1
    assert row(comparison.table, "compute")["verdict"] == "REGRESSED"
    assert not row(comparison.table, "compute")["higher_is_better"]


def test_improvement_only_exits_0(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    better = shifted(shifted(base_frame(), "subject_consistency", +0.03), "compute", -0.2)
    comparison = compare_dirs(base, write_run(tmp_path / "new", better), CompareOptions(n_resamples=200))
    assert comparison.exit_code == 0
    assert row(comparison.table, "subject_consistency")["verdict"] == "improved"
    assert row(comparison.table, "compute")["verdict"] == "improved"


def test_max_drop_tolerates_a_small_significant_drop(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", shifted(base_frame(), "subject_consistency", -0.01, every=1000))
    strict = compare_dirs(base, new, CompareOptions(n_resamples=200))
    assert strict.exit_code == 1
    drop = -row(strict.table, "subject_consistency")["delta"]
    for tolerance in (f"{drop * 1.5}", "2%"):  # 2% of a mean near 0.87 is 0.017 > the 0.01 drop
        lenient = compare_dirs(base, new, CompareOptions(n_resamples=200,
                                                         max_drop={"subject_consistency": tolerance}))
        assert lenient.exit_code == 0
        assert row(lenient.table, "subject_consistency")["verdict"] == "worse, within tolerance"
    tight = compare_dirs(base, new, CompareOptions(n_resamples=200,
                                                   max_drop={"subject_consistency": f"{drop / 2}"}))
    assert tight.exit_code == 1


def test_bad_option_values_are_one_line_errors(tmp_path, capsys):
    base = write_run(tmp_path / "base", base_frame())
    for argv, expected in ((["--max-drop", "color"], "--max-drop 'color'"),
                           (["--max-drop", "color=-1"], "X >= 0"),
                           (["--pair", "m4v-tiny"], "BASE_MODEL=NEW_MODEL"),
                           (["--max-drop", "flicker=0.1"], "['flicker']")):
        assert cli.main(["compare", str(base), str(base), *argv]) == 2
        assert expected in capsys.readouterr().err
    # numbers: typed by the bounds table, argparse names the flag and the bound (exit 2)
    for argv, expected in ((["--alpha", "1.5"], "argument --alpha: must be a finite number in (0, 1), got '1.5'"),
                           (["--resamples", "0"], "argument --resamples: must be an integer in [1, 100000]"),
                           (["--resamples", "1e9"], "argument --resamples: must be an integer in [1, 100000]"),
                           (["--seed", "-1"], "argument --seed: must be an integer in [0, ")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["compare", str(base), str(base), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    with pytest.raises(CompareError, match=r"--resamples 0: must be an integer in \[1, 100000\]"):
        CompareOptions(n_resamples=0)   # the library checks the same bound
    assert parse_tolerances(["color=5%", "compute=0.1"]) == {"color": "5%", "compute": "0.1"}


# ---------------------------------------------------------------- pairing and input checks

def test_allow_unpaired_compares_the_intersection_and_says_so(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    failed = base_frame()
    failed.loc[0, ["status", "score", "reason"]] = ["failed", np.nan, "decode error"]
    new = write_run(tmp_path / "new", failed)
    with pytest.raises(CompareError, match="base ok, new failed"):
        compare_dirs(base, new)
    comparison = compare_dirs(base, new, CompareOptions(allow_unpaired=True, n_resamples=200))
    assert row(comparison.table, failed.loc[0, "dimension"])["n_pairs"] == 33
    assert row(comparison.table, failed.loc[0, "dimension"])["n_unpaired"] == 1
    assert any("1 unpaired left out" in note for note in comparison.notes)


def test_declined_on_both_sides_is_not_a_sample(tmp_path):
    declined = base_frame()
    declined.loc[declined["dimension"] == "color", ["status", "score"]] = ["declined", np.nan]
    comparison = compare_dirs(write_run(tmp_path / "base", declined), write_run(tmp_path / "new", declined),
                              CompareOptions(n_resamples=200))
    assert comparison.exit_code == 0 and "color" not in set(comparison.table["dimension"])


def test_pairing_by_flag_and_one_to_one(tmp_path):
    base = write_run(tmp_path / "base", base_frame(models=("m4v-tiny", "dit-tiny")))
    candidate = base_frame(models=("ckpt-1000",))
    new = write_run(tmp_path / "new", shifted(candidate, "subject_consistency", -0.03))
    with pytest.raises(CompareError, match=r"no model pairs.*--pair"):
        compare_dirs(base, new)
    comparison = compare_dirs(base, new, CompareOptions(pairs=[("m4v-tiny", "ckpt-1000")], n_resamples=200))
    assert set(comparison.table["model_base"]) == {"m4v-tiny"}
    assert row(comparison.table, "subject_consistency")["verdict"] == "REGRESSED"
    with pytest.raises(CompareError, match="base has no model 'sdxl'"):
        compare_dirs(base, new, CompareOptions(pairs=[("sdxl", "ckpt-1000")]))

    single = write_run(tmp_path / "single", base_frame(models=("m4v-tiny",)))
    one_to_one = compare_dirs(single, new, CompareOptions(n_resamples=200))
    assert set(zip(one_to_one.table["model_base"], one_to_one.table["model_new"])) == {("m4v-tiny", "ckpt-1000")}
    assert one_to_one.exit_code == 1


def test_same_names_pair_and_lone_models_are_noted(tmp_path):
    base = write_run(tmp_path / "base", base_frame(models=("m4v-tiny", "dit-tiny")))
    new = write_run(tmp_path / "new", base_frame(models=("m4v-tiny",)))
    comparison = compare_dirs(base, new, CompareOptions(n_resamples=200))
    assert set(comparison.table["model_base"]) == {"m4v-tiny"} and comparison.exit_code == 0
    assert "not compared (only in base): dit-tiny" in comparison.notes


def test_unknown_dimension_and_bare_csv_input(tmp_path):
    odd = base_frame()
    odd.loc[odd["dimension"] == "color", "dimension"] = "colour_typo"
    base = write_run(tmp_path / "base", odd)
    with pytest.raises(CompareError, match=r"unknown dimension\(s\) \['colour_typo'\]"):
        compare_dirs(base, base)
    bare = tmp_path / "bare"
    bare.mkdir()
    base_frame().to_csv(bare / "per_video.csv", index=False)
    comparison = compare_dirs(bare / "per_video.csv", bare / "per_video.csv", CompareOptions(n_resamples=200))
    assert comparison.exit_code == 0 and any("settings not checked" in n for n in comparison.notes)
    with pytest.raises(CompareError, match="not found"):
        compare_dirs(tmp_path / "missing", bare)


def test_scores_from_different_backbones_are_refused(tmp_path):
    other = base_frame()
    other.loc[other["dimension"] == "subject_consistency", "backbone"] = "dino:vit_small"
    with pytest.raises(CompareError, match="subject_consistency: scored with backbone 'none' in base, "
                                           "'dino:vit_small' in new"):
        compare_dirs(write_run(tmp_path / "base", base_frame()), write_run(tmp_path / "new", other))


def test_different_models_alone_are_not_different_settings(tmp_path):
    base = write_run(tmp_path / "base", base_frame(models=("m4v-tiny",)))
    new = write_run(tmp_path / "new", base_frame(models=("ckpt",)))
    assert compare_dirs(base, new, CompareOptions(n_resamples=200)).exit_code == 0


def test_a_suite_field_added_since_the_base_run_at_its_unset_default_is_no_difference(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", base_frame(), suite={**SUITE, "paper_table": None})
    assert compare_dirs(base, new, CompareOptions(n_resamples=200)).exit_code == 0
    set_one = write_run(tmp_path / "set", base_frame(), suite={**SUITE, "paper_table": "table5"})
    with pytest.raises(CompareError, match="suite.paper_table: only in new"):
        compare_dirs(base, set_one, CompareOptions(n_resamples=200))


# ---------------------------------------------------------------- statistics against independent computations

def test_holm_matches_a_hand_computation():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # 0.5*2 capped at 1, then never decreasing
    np.testing.assert_allclose(holm([0.2]), [0.2])


def test_holm_is_applied_across_the_metrics_of_a_model(tmp_path):
    base = write_run(tmp_path / "base", base_frame())
    new = write_run(tmp_path / "new", shifted(base_frame(seed=0), "subject_consistency", -0.005))
    table = compare_dirs(base, new, CompareOptions(n_resamples=200)).table
    np.testing.assert_allclose(table["p_holm"], holm(table["p_value"].to_numpy()))


def test_wilcoxon_p_is_scipys(tmp_path):
    """One sample a prompt: Wilcoxon on the paired samples; two (seeds 0 and 1): on the per-prompt means."""
    base_df, new_df = base_frame(seed=0), base_frame(seed=1)
    for name, first_seed_only in (("one", True), ("two", False)):
        b, n = ((df[df["seed"] == 0] if first_seed_only else df) for df in (base_df, new_df))
        table = compare_dirs(write_run(tmp_path / f"b{name}", b), write_run(tmp_path / f"n{name}", n),
                             CompareOptions(n_resamples=200)).table
        pick = {side: df[df["dimension"] == "subject_consistency"].groupby("prompt", sort=True)["score"].mean()
                for side, df in (("base", b), ("new", n))}
        expected = stats.wilcoxon(pick["new"].to_numpy(), pick["base"].to_numpy()).pvalue
        got = row(table, "subject_consistency")
        assert got["test"] == ("wilcoxon" if first_seed_only else "wilcoxon on prompt means")
        assert got["p_value"] == pytest.approx(expected, rel=1e-12)
        assert got["n_prompts"] == len(PROMPTS) and got["n_pairs"] == len(PROMPTS) * (1 if first_seed_only else 2)
        scores = {side: df[df["dimension"] == "subject_consistency"]["score"] for side, df in (("base", b), ("new", n))}
        assert got["delta"] == pytest.approx(scores["new"].mean() - scores["base"].mean())


def test_sign_test_on_a_0_1_metric_is_an_exact_binomial(tmp_path):
    base_df = base_frame()
    new_df = base_df.copy()
    color = new_df.index[new_df["dimension"] == "color"]
    new_df.loc[color[:12], "score"] = 0.0  # lose the object's colour on the first 12 samples
    table = compare_dirs(write_run(tmp_path / "b", base_df), write_run(tmp_path / "n", new_df),
                         CompareOptions(n_resamples=200)).table
    # two samples a prompt (seeds 0, 1): the sign test counts prompts whose mean fell (none rose)
    lost = base_df.loc[color[:12]].query("score == 1")["prompt"].nunique()
    assert lost >= 4
    assert row(table, "color")["test"] == "sign on prompt means"
    assert row(table, "color")["p_value"] == pytest.approx(stats.binomtest(0, lost, 0.5).pvalue, rel=1e-12)
    # one sample a prompt: the exact McNemar test on the samples, as before
    first = base_df["seed"] == 0
    table = compare_dirs(write_run(tmp_path / "b1", base_df[first]), write_run(tmp_path / "n1", new_df[first]),
                         CompareOptions(n_resamples=200)).table
    lost = int((base_df.loc[color[:12]].query("seed == 0")["score"] == 1).sum())
    assert lost >= 3 and row(table, "color")["test"] == "sign"
    assert row(table, "color")["p_value"] == pytest.approx(stats.binomtest(0, lost, 0.5).pvalue, rel=1e-12)


def test_bootstrap_interval_is_seeded_and_near_the_normal_interval():
    d = np.random.default_rng(3).normal(0.1, 0.5, size=2000)
    first = bootstrap_interval(d, 0.95, 4000, seed=7)
    assert first == bootstrap_interval(d, 0.95, 4000, seed=7)
    assert first != bootstrap_interval(d, 0.95, 4000, seed=8)
    half_width = stats.norm.ppf(0.975) * d.std(ddof=1) / np.sqrt(len(d))  # CLT interval of the mean
    np.testing.assert_allclose(first, (d.mean() - half_width, d.mean() + half_width), atol=0.15 * half_width)
    assert bootstrap_interval(np.full(5, 0.25), 0.95, 100, seed=0) == (0.25, 0.25)
