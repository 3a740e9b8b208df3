"""benchmarks/stats.py with samples nested in prompts: simulated runs of known within-prompt correlation give the
stated coverage and false-regression rates, the old i.i.d. statistics do not, and one sample a prompt changes
nothing."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from benchmarks import stats

# the simulated design and its runs live with the diagnostic that writes results/clustered_intervals/ from them
from benchmarks.diagnostics.clustered_intervals import (
    PROMPTS,
    RHO,
    RUNS,
    SAMPLES,
    clustered_scores,
    compare_interval_coverage,
    labels,
    null_comparisons,
    summary_coverage,
)


def band(rate: float, runs: int) -> float:
    """Three Monte Carlo standard deviations of a rate estimated from `runs` runs."""
    return 3 * math.sqrt(rate * (1 - rate) / runs)


def test_summary_interval_covers_95_percent_and_the_iid_interval_does_not():
    """80 prompts x 3 samples, rho = 0.5 (design effect 2): resampling prompts covers the true mean in ~95% of
    600 runs; resampling videos as if independent covers far less (~83% at this design effect). 1,000 resamples
    (the summary draws 2,000: the same method, half the time)."""
    found = summary_coverage()
    # (the percentile bootstrap of a mean over k units is narrow by sqrt((k-1)/k): at 40 prompts it covers ~94%)
    assert abs(found["coverage_clustered"] - 0.95) <= band(0.95, RUNS), found
    assert found["coverage_iid"] < 0.95 - 3 * band(0.95, RUNS), found
    # and the width ratio is the design effect's square root, sqrt(1 + (3 - 1) * 0.5)
    assert found["width_ratio_median"] == pytest.approx(math.sqrt(1 + (SAMPLES - 1) * RHO), rel=0.1)


def test_compare_false_regressions_are_near_5_percent_and_the_per_sample_test_is_not():
    """Base and new equal on average; a prompt-specific difference (correlation rho within a prompt) is what
    per-sample pairs share. compare's test on prompt means rejects ~5% of 600 null runs (two-sided) and flags ~2.5%
    as REGRESSED (the worse side); Wilcoxon on the 240 samples as independent pairs rejects far more."""
    table, per_sample, base, new = null_comparisons()
    assert set(table["test"]) == {"wilcoxon on prompt means"}
    rejected, regressed = (table["p_holm"] < 0.05).mean(), table["regressed"].mean()
    assert abs(rejected - 0.05) <= band(0.05, RUNS), rejected
    assert abs(regressed - 0.025) <= band(0.025, RUNS), regressed
    # the same runs with every sample an independent pair (the old test): anti-conservative
    assert (per_sample < 0.05).mean() > 0.05 + 2 * band(0.05, RUNS)
    # the clustered p is Wilcoxon on the per-prompt means (an independent check of what it computes)
    means = [pd.Series(x).groupby(np.repeat(np.arange(PROMPTS), SAMPLES)).mean() for x in (base[0], new[0])]
    assert table["p_value"].iloc[0] == pytest.approx(scipy_stats.wilcoxon(means[1], means[0]).pvalue, rel=1e-12)


def test_compare_interval_resamples_prompts_and_covers():
    """compare's interval of the mean paired difference (scipy's bootstrap over prompts) covers the true
    difference 0 in ~95% of 300 null runs (1,000 resamples, not compare's 9,999: speed, not a different method)."""
    found = compare_interval_coverage()
    assert abs(found["coverage"] - 0.95) <= band(0.95, found["runs"]), found


def test_one_sample_a_prompt_reproduces_the_unclustered_statistics_exactly():
    """Every prompt its own cluster: intervals, tests and summaries are the i.i.d. ones, bit for bit."""
    rng = np.random.default_rng(3)
    base, new = rng.normal(size=25), rng.normal(size=25)
    distinct = [f"p{i}" for i in range(25)]
    assert stats.bootstrap_interval(new, clusters=distinct, seed=4) == stats.bootstrap_interval(new, seed=4)
    mean = lambda items: float(np.mean(items))   # noqa: E731 - the aggregate path, against the vectorised one
    assert stats.bootstrap_interval(list(new), mean, distinct, seed=4) == pytest.approx(
        stats.bootstrap_interval(new, seed=4), rel=1e-12)
    assert stats.mean_interval(new - base, seed=5, clusters=distinct) == stats.mean_interval(new - base, seed=5)
    assert stats.paired_test(base, new, distinct) == stats.paired_test(base, new)
    assert stats.paired_summary(base, new, distinct, n_resamples=500) == stats.paired_summary(base, new,
                                                                                              n_resamples=500)
    # external videos scored without a prompt file have no prompt (""): each is its own unit, never one cluster
    unknown = stats.prompt_clusters([""] * 25, [f"video v{i}.mp4" for i in range(25)])
    assert stats.paired_test(base, new, unknown) == stats.paired_test(base, new)
    assert stats.mean_interval(new - base, seed=5, clusters=unknown) == stats.mean_interval(new - base, seed=5)
    # and with several samples a prompt the aggregate path (a metric's own weighting) equals the vectorised mean
    prompts = labels(5, 5)
    assert stats.bootstrap_interval(list(new), mean, prompts, seed=6) == pytest.approx(
        stats.bootstrap_interval(new, clusters=prompts, seed=6), rel=1e-12)


def test_icc_and_design_effect_recover_a_known_correlation():
    """The ANOVA estimate of rho from 400 prompts x 4 samples is within 0.06 of 0.5; unbalanced prompts too;
    one sample a prompt has no within-prompt correlation to estimate."""
    rng = np.random.default_rng(4)
    scores = clustered_scores(rng, 1, 400, 4, RHO)[0]
    assert stats.icc(scores, labels(400, 4)) == pytest.approx(RHO, abs=0.06)
    keep = rng.random(len(scores)) < 0.8   # drop a fifth of the videos (failed samples): unbalanced prompts
    assert stats.icc(scores[keep], np.array(labels(400, 4))[keep]) == pytest.approx(RHO, abs=0.07)
    assert math.isnan(stats.icc(scores[:10], [str(i) for i in range(10)]))
    assert stats.icc(rng.normal(size=400), labels(100, 4)) <= 0.1   # independent samples: about 0 (truncated)
    assert stats.design_effect(0.5, 4) == 2.5 and stats.prompt_sd(2.0, 0.5, 4) == pytest.approx(2 * math.sqrt(2.5 / 4))


def test_planned_prompts_reach_the_stated_power_with_correlated_samples(tmp_path):
    """plan from a pilot of 4 correlated samples a prompt, then draw runs of the planned prompts x 4 and test
    them as compare does (Wilcoxon on prompt means at Holm's first level): ~80% power; the i.i.d. plan, which
    counts videos as independent, falls well short."""
    from benchmarks.reporting.plan import plan_run

    rng = np.random.default_rng(5)
    delta, rho, m = 0.5, 0.6, 4
    rows = []
    base = rng.normal(10, 1, size=(300, m))
    new = base + delta + clustered_scores(rng, 1, 300, m, rho)[0].reshape(300, m)
    for model, scores in (("base", base), ("new", new)):
        for p in range(300):
            for s in range(m):
                rows.append({"model": model, "prompt": f"p{p}", "seed": s, "sample": s, "dimension": "clip_score",
                             "score": scores[p, s], "status": "ok", "backbone": "x", "faithful": False,
                             "n_frames": 8, "video": f"{model}/{p}-{s}.mp4", "extra": "{}"})
    tmp_path.joinpath("pilot").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "pilot" / "per_video.csv", index=False)
    row = plan_run(tmp_path / "pilot", detect=delta).iloc[0]
    assert row["samples"] == m and row["icc_paired"] == pytest.approx(rho, abs=0.08)
    prompts = int(row["n_paired"]) // m
    assert prompts * m == row["n_paired"]
    diffs = delta + clustered_scores(rng, 1000, prompts, m, rho).reshape(1000, prompts, m).mean(axis=2)
    power = (scipy_stats.wilcoxon(diffs, axis=1).pvalue < 0.05).mean()   # one metric: Holm's level is alpha
    assert abs(power - 0.80) <= 0.05, (prompts, power)
    iid_prompts = math.ceil(stats.paired_n(row["sd_paired"], delta) / m)   # videos as if independent
    short = delta + clustered_scores(rng, 1000, iid_prompts, m, rho).reshape(1000, iid_prompts, m).mean(axis=2)
    assert (scipy_stats.wilcoxon(short, axis=1).pvalue < 0.05).mean() < 0.65


def write_clustered_run(directory, model: str, scores: np.ndarray, prompts: int, samples: int):
    """A run directory (per_video.csv, results.json, COMPLETE) of one model, `samples` seeds a prompt."""
    import json

    rows = [{"model": model, "prompt": f"prompt {p}", "seed": s, "sample": s, "dimension": "clip_score",
             "score": scores[p * samples + s], "status": "ok", "reason": "", "backbone": "x", "faithful": False,
             "n_frames": 8, "video": f"videos/{p}-{s}.mp4", "extra": "{}"}
            for p in range(prompts) for s in range(samples)]
    directory.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(directory / "per_video.csv", index=False)
    suite = {"name": "s", "models": [model], "samples": samples, "prompts": [f"prompt {p}" for p in range(prompts)]}
    (directory / "results.json").write_text(json.dumps({"provenance": {"suite": suite}, "rows": []}))
    (directory / "COMPLETE").write_text(json.dumps({"files": ["per_video.csv", "results.json"]}))
    return directory


def test_cli_compare_and_plan_state_the_clustered_statistics(tmp_path, capsys):
    """Through the CLI, 12 prompts x 5 correlated samples: compare names its test on prompt means, counts
    prompts in its MDE and notes why; plan shows the within-prompt correlation and sizes in prompts x samples,
    fewer videos at fewer samples a prompt when samples are correlated (--samples)."""
    import in_process

    from benchmarks import cli

    rng = np.random.default_rng(6)
    base = 10 + clustered_scores(rng, 1, 12, 5, 0.7)[0]
    new = base + clustered_scores(rng, 1, 12, 5, 0.7)[0]
    a = write_clustered_run(tmp_path / "a", "m", base, 12, 5)
    b = write_clustered_run(tmp_path / "b", "m", new, 12, 5)
    result = in_process.cli("compare", a, b, "--resamples", "500", "--out", tmp_path / "cmp")
    assert result.returncode in (0, 1), result.stderr
    assert "wilcoxon on prompt means" in result.stdout and "tests on per-prompt mean differences" in result.stdout
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert table.loc[0, "n_pairs"] == 60 and table.loc[0, "n_prompts"] == 12
    means = [pd.Series(x).groupby(np.arange(60) // 5).mean() for x in (base, new)]
    assert table.loc[0, "p_value"] == pytest.approx(scipy_stats.wilcoxon(means[1], means[0]).pvalue, rel=1e-12)
    assert table.loc[0, "sd_diff"] == pytest.approx((means[1] - means[0]).std(ddof=1))
    both = pd.concat([pd.read_csv(a / "per_video.csv").assign(model="base"),
                      pd.read_csv(b / "per_video.csv").assign(model="new")])
    (tmp_path / "both").mkdir()
    both.to_csv(tmp_path / "both" / "per_video.csv", index=False)

    def plan(*argv) -> str:
        assert cli.main(["plan", "--from", str(tmp_path / "both"), "--detect", "0.5", *argv]) == 0
        return capsys.readouterr().out

    def videos(text):   # the paired column's videos: "n (prompts × m)"
        line = next(row for row in text.splitlines() if row.startswith("| clip_score"))
        return int(line.split("|")[-3].split("(")[0])

    five, one = plan(), plan("--samples", "1")
    assert "| ρ | ρ paired |" in five and "× 5)" in five and "× 1)" in one
    assert videos(one) < videos(five)   # rho 0.7: a prompt's fifth sample adds little
    with pytest.raises(SystemExit) as exit_info:
        plan("--samples", "0")
    assert exit_info.value.code == 2 and "--samples" in capsys.readouterr().err


def test_summary_resamples_prompts_with_each_metrics_own_weighting():
    """writers.summarize: subject_consistency's aggregate is pair-weighted (sum of similarities / sum of frame
    pairs). Its interval is the percentile bootstrap of that ratio over resampled prompts, checked against the
    resampling written out here by hand; one sample a prompt reproduces the bootstrap over videos."""
    import json

    from benchmarks.reporting.writers import N_RESAMPLES, summarize

    rng = np.random.default_rng(7)
    prompts, samples = 12, 3
    pairs = rng.integers(5, 30, size=prompts * samples)                     # frame pairs per video
    level = np.repeat(rng.uniform(0.80, 0.95, prompts), samples)            # a prompt's shared level
    sims = pairs * np.clip(level + rng.normal(0, 0.01, prompts * samples), 0, 1)
    rows = [{"model": "m", "prompt": f"p{i // samples}", "seed": i % samples, "sample": i % samples,
             "dimension": "subject_consistency", "score": sims[i] / pairs[i], "status": "ok", "reason": "",
             "backbone": "x", "faithful": False, "n_frames": 16, "video": f"v{i}.mp4",
             "extra": json.dumps({"video_sim": float(sims[i]), "cnt_per_video": int(pairs[i])})}
            for i in range(prompts * samples)]
    per_video = pd.DataFrame(rows)
    generation = pd.DataFrame(columns=["model", "sample", "seconds", "tflops", "mixer_tflops", "peak_mb"])

    def by_hand(units: np.ndarray) -> tuple[float, float]:
        """Resample `units` (a prompt or a video index per video) as the summary does, the ratio by hand."""
        codes = pd.factorize(units)[0]
        k = codes.max() + 1
        draws = np.random.default_rng(0).integers(0, k, size=(N_RESAMPLES, k))
        sim_k, pairs_k = np.bincount(codes, weights=sims, minlength=k), np.bincount(codes, weights=pairs, minlength=k)
        ratio = sim_k[draws].sum(axis=1) / pairs_k[draws].sum(axis=1)
        return tuple(np.quantile(ratio, [0.025, 0.975]))

    row = summarize(per_video, generation, ["m"]).iloc[0]
    assert row["subject_consistency"] == pytest.approx(sims.sum() / pairs.sum())
    assert (row["subject_consistency_ci_low"], row["subject_consistency_ci_high"]) == pytest.approx(
        by_hand(per_video["prompt"].to_numpy()), rel=1e-9)
    single = per_video.assign(prompt=[f"p{i}" for i in range(len(per_video))])   # every video its own prompt
    row1 = summarize(single, generation, ["m"]).iloc[0]
    low, high = by_hand(np.arange(len(per_video)))
    assert (row1["subject_consistency_ci_low"], row1["subject_consistency_ci_high"]) == pytest.approx((low, high),
                                                                                                        rel=1e-9)
    # the shared prompt level makes the prompt-level interval the wider one
    assert row["subject_consistency_ci_high"] - row["subject_consistency_ci_low"] > 1.5 * (high - low)
