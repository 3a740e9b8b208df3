"""The planner (benchmarks/reporting/plan.py): its n reaches the stated power and interval width when runs are drawn
at it."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks import cli
from benchmarks.reporting.plan import plan_directions, plan_run
from benchmarks.reporting.precision import precision_table
from benchmarks.stats import halfwidth, holm, n_for_halfwidth, paired_mde, paired_n, paired_test

MODELS = ("base", "new")
DIMS = ("clip_score", "world_colour_shape", "frame_consistency")   # 3 metrics: Holm's first level is alpha / 3
TRUE_DELTA, TRUE_SD_BASE, TRUE_SD_NOISE = 0.5, 1.0, 1.2            # new = base + delta + noise on clip_score
SIMULATIONS = 2000


def pilot_run(directory, n_prompts: int, seed: int = 0, samples: int = 1):
    """A run directory of two models on shared prompts from a known distribution: clip_score of new = base +
    TRUE_DELTA + N(0, TRUE_SD_NOISE) (paired spread TRUE_SD_NOISE), a 0/1 check, a metric that does not move."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        for sample in range(samples):
            base = rng.normal(10, TRUE_SD_BASE)
            scores = {"base": {"clip_score": base, "world_colour_shape": float(rng.random() < 0.5),
                               "frame_consistency": 0.9},
                      "new": {"clip_score": base + TRUE_DELTA + rng.normal(0, TRUE_SD_NOISE),
                              "world_colour_shape": float(rng.random() < 0.5), "frame_consistency": 0.9}}
            for model in MODELS:
                for dim in DIMS:
                    rows.append({"model": model, "prompt": f"prompt {p}", "seed": 1000 * sample, "sample": sample,
                                 "dimension": dim, "score": scores[model][dim], "status": "ok", "reason": "",
                                 "backbone": "none", "faithful": False, "n_frames": 16,
                                 "video": f"videos/{model}/prompt {p}-{sample}.mp4", "extra": "{}"})
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(directory / "per_video.csv", index=False)
    (directory / "results.json").write_text(json.dumps({"provenance": {"suite": {"samples": samples}}, "rows": []}))
    return directory


def test_planned_pairs_reach_the_stated_power_with_compares_own_test(tmp_path):
    """Plan from a pilot run, then draw 2000 paired runs of the planned size from the same distribution and test
    each as compare does (Wilcoxon signed-rank, significant at Holm's first level alpha / 3): 80% +- 5 points."""
    plan = plan_run(pilot_run(tmp_path / "pilot", 400), metric="clip_score", detect=TRUE_DELTA)
    row = plan.iloc[0]
    assert row["family"] == len(DIMS) and row["pair"] == "base=new"
    assert row["sd_paired"] == pytest.approx(TRUE_SD_NOISE, rel=0.1)   # the pilot's paired spread
    n = int(row["n_paired"])
    rng = np.random.default_rng(1)
    base = rng.normal(10, TRUE_SD_BASE, size=(SIMULATIONS, n))
    new = base + TRUE_DELTA + rng.normal(0, TRUE_SD_NOISE, size=(SIMULATIONS, n))
    p = stats.wilcoxon(new, base, axis=1).pvalue
    assert paired_test(base[0], new[0]) == ("wilcoxon", pytest.approx(p[0]))   # the test compare runs
    power = float((p < 0.05 / len(DIMS)).mean())
    assert abs(power - 0.80) <= 0.05, (n, power)
    # a 0/1 metric, planned with the same formula (a normal approximation of compare's exact sign test)
    p10, p01 = 0.25, 0.10   # new passes where base fails / fails where base passes
    delta, s_d = p10 - p01, math.sqrt(p10 + p01 - (p10 - p01) ** 2)
    n01 = int(paired_n(s_d, delta, 0.05, len(DIMS)))
    u = rng.random((SIMULATIONS, n01))
    base01, new01 = (u >= p10).astype(float), ((u < p10) | (u >= p10 + p01)).astype(float)
    assert np.allclose((new01 - base01).mean(), delta, atol=0.01)
    power01 = np.mean([paired_test(b, x)[1] < 0.05 / len(DIMS) for b, x in zip(base01, new01)])
    assert abs(power01 - 0.80) <= 0.05, (n01, power01)
    # and half the planned n falls well short: the n is needed, not generous
    half = n // 2
    p_half = stats.wilcoxon(new[:, :half], base[:, :half], axis=1).pvalue
    assert (p_half < 0.05 / len(DIMS)).mean() < 0.65


def test_planned_videos_give_the_stated_interval_coverage_and_width():
    """At n_for_halfwidth(s, h) the 95% normal interval of a mean has half-width about h and covers the true
    mean in 95% +- 2 points of 2000 simulated runs (a skewed, 0/1-like metric too: its normal approximation)."""
    rng = np.random.default_rng(2)
    for draw, mean, sd in ((lambda size: rng.normal(3.0, 2.0, size), 3.0, 2.0),
                           (lambda size: (rng.random(size) < 0.3).astype(float), 0.3, math.sqrt(0.21))):
        n = int(n_for_halfwidth(sd, 0.1))
        runs = draw((SIMULATIONS, n))
        h = 1.96 * runs.std(axis=1, ddof=1) / math.sqrt(n)
        assert np.median(h) == pytest.approx(0.1, rel=0.03)
        covered = np.abs(runs.mean(axis=1) - mean) <= h
        assert abs(covered.mean() - 0.95) <= 0.02


def test_formulas_invert_each_other():
    """n_for_halfwidth inverts halfwidth and paired_n inverts paired_mde (to the next whole video)."""
    for s, n in ((0.3, 58), (12.0, 127), (1.0, 2)):
        assert n_for_halfwidth(s, halfwidth(s, n)) == n
        for m in (1, 26):
            assert paired_n(s, paired_mde(s, n, 0.05, m), 0.05, m) == n
    # a paired MDE: (t_{n-1, 1 - alpha/2m} + t_{n-1, 0.8}) s / sqrt(E n), E = 3/pi (Wilcoxon vs t on normal data)
    assert paired_mde(1.0, 100, 0.05, 5) == pytest.approx(
        (stats.t.ppf(1 - 0.005, 99) + stats.t.ppf(0.8, 99)) / math.sqrt(300 / math.pi))


def balanced_icc(frame: pd.DataFrame) -> float:
    """One-way ANOVA intraclass correlation of a balanced prompts x samples table, by the textbook formula
    (MSB - MSW) / (MSB + (m - 1) MSW), truncated at 0."""
    groups = frame.groupby("prompt")["score"]
    m = int(groups.size().iloc[0])
    msb, msw = m * groups.mean().var(ddof=1), groups.var(ddof=1).mean()
    return max(0.0, (msb - msw) / (msb + (m - 1) * msw))


def test_report_precision_table_reads_the_run(tmp_path):
    """report.md's section: n and the widest interval of each metric; the videos for 0.5x and 0.25x of it, in
    prompts of two samples through the design effect 1 + (m - 1) rho."""
    run = pilot_run(tmp_path / "run", 40, samples=2)
    per_video = pd.read_csv(run / "per_video.csv")
    summary = pd.DataFrame([{"model": m, "clip_score_ci_low": 9.0, "clip_score_ci_high": 9.0 + 2 * w,
                             "clip_score": 10.0} for m, w in zip(MODELS, (0.3, 0.4))])
    table = precision_table(per_video, summary, samples=2).set_index("metric")
    row = table.loc["clip_score"]
    mine = [per_video[(per_video["model"] == m) & (per_video["dimension"] == "clip_score")] for m in MODELS]
    sd, rho = max(part["score"].std() for part in mine), max(balanced_icc(part) for part in mine)
    assert row["n"] == 80 and row["halfwidth"] == pytest.approx(0.4) and row["sd"] == pytest.approx(sd)
    assert row["icc"] == pytest.approx(rho) and row["samples"] == 2 and row["prompts"] == 40
    # a prompt's mean of 2 samples has variance sd^2 (1 + rho) / 2: prompts = (z sd / h)^2 (1 + rho) / 2
    assert row["n_half"] == 2 * math.ceil((1.959964 * sd / 0.2) ** 2 * (1 + rho) / 2)
    assert row["n_quarter"] == 2 * math.ceil((1.959964 * sd / 0.1) ** 2 * (1 + rho) / 2)
    # one sample a prompt: the plain i.i.d. sizes, unchanged
    single = per_video[per_video["sample"] == 0]
    row = precision_table(single, summary).set_index("metric").loc["clip_score"]
    sd = max(single[single["model"] == m].query("dimension == 'clip_score'")["score"].std() for m in MODELS)
    assert row["samples"] == 1 and np.isnan(row["icc"])
    assert row["n_half"] == math.ceil((1.959964 * sd / 0.2) ** 2)
    assert row["n_quarter"] == math.ceil((1.959964 * sd / 0.1) ** 2)


def test_directions_csv_plan_names_the_pairs_to_resolve(tmp_path):
    """From a paper directions CSV: s_d recovered from the 95% interval, the pairs for the paper's delta."""
    frame = pd.DataFrame([{"contrast": "a vs b", "metric": "imaging_quality", "paper_delta": 1.0, "delta": 0.2,
                           "ci_low": -1.0, "ci_high": 1.4, "n_pairs": 100, "p_holm": 0.9, "verdict": "unresolved"},
                          {"contrast": "a vs c", "metric": "imaging_quality", "paper_delta": -2.0, "delta": -3.0,
                           "ci_low": -4.0, "ci_high": -2.0, "n_pairs": 100, "p_holm": 0.01,
                           "verdict": "reproduced"}])
    path = tmp_path / "paper_table3_directions.csv"
    frame.to_csv(path, index=False)
    planned = plan_directions(path)
    s_d = 10 * 2.4 / (2 * 1.959964)
    n = planned.loc[0, "n_to_resolve"]   # the smallest n whose t-based, Wilcoxon-efficiency MDE reaches 1.0
    assert paired_mde(s_d, int(n), 0.05, 2) <= 1.0 < paired_mde(s_d, int(n) - 1, 0.05, 2)


def test_cli_plan_prints_a_table_and_refuses_bad_input(tmp_path, capsys):
    """`m4v-bench plan`: a markdown table per metric; a missing run, unknown metric or bad --detect is one line,
    exit 2."""
    run = pilot_run(tmp_path / "run", 30)
    assert cli.main(["plan", "--from", str(run), "--detect", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "| clip_score |" in out and "n to detect 0.5 (paired)" in out
    for argv, needle in ((["--from", str(tmp_path / "none")], "none"), (["--from", str(run), "--metric", "x"],
                                                                         "--metric x")):
        assert cli.main(["plan", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err
    # numbers: typed by the bounds table (flags.BOUNDS), argparse names the flag and the bound (exit 2)
    for argv, needle in ((["--detect", "-1"], "argument --detect: must be a finite number > 0, got '-1'"),
                         (["--detect", "nan"], "argument --detect: must be a finite number > 0"),
                         (["--alpha", "1"], "argument --alpha: must be a finite number in (0, 1)"),
                         (["--power", "inf"], "argument --power: must be a finite number in (0, 1)")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["plan", "--from", str(run), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, err


def test_compare_states_what_it_cannot_resolve(tmp_path):
    """compare's table carries the paired MDE; a non-significant metric says what it cannot resolve."""
    from benchmarks.compare import CompareOptions, compare_dirs, markdown

    run = pilot_run(tmp_path / "run", 30)
    per_video = pd.read_csv(run / "per_video.csv")
    a, b = tmp_path / "a", tmp_path / "b"
    for directory, model in ((a, "base"), (b, "new")):
        directory.mkdir()
        per_video[per_video["model"] == model].assign(model="m").to_csv(directory / "per_video.csv", index=False)
    comparison = compare_dirs(a, b, CompareOptions(n_resamples=200))
    table = comparison.table.set_index("dimension")
    diffs = (per_video[per_video["model"] == "new"].set_index(["prompt", "dimension"])["score"]
             - per_video[per_video["model"] == "base"].set_index(["prompt", "dimension"])["score"])
    sd = diffs.xs("clip_score", level="dimension").std()
    assert table.loc["clip_score", "mde"] == pytest.approx(
        (stats.t.ppf(1 - 0.05 / 6, 29) + stats.t.ppf(0.8, 29)) * sd / math.sqrt(30 * 3 / math.pi))
    text = markdown(comparison)
    quiet = table[table["verdict"] == "no significant change"]
    assert len(quiet) and all(f"cannot resolve differences below {mde:.3g} at n = 30" in text
                              for mde in quiet["mde"].dropna() if mde > 0)
    assert "cannot resolve differences below 0 at" not in text   # no spread: nothing below which it is blind
    assert holm([0.01])[0] == 0.01
