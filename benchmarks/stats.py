"""The harness's statistics in one place: intervals, paired tests, detectable differences and power.

Pure numpy / scipy / pandas: it knows nothing of runs, evaluators or files (callers pass an aggregate function
where a metric has its own weighting). Samples are nested in prompts (`clusters`: a prompt label per item):
  intervals       percentile bootstrap that resamples prompts with all their samples (a cluster bootstrap);
                  with one sample a prompt it is the plain bootstrap over videos, draw for draw
  paired tests    exact sign test for 0/1 scores, else Wilcoxon signed-rank, on the paired differences; when a
                  prompt has several samples, on the per-prompt mean differences (the prompts are the
                  independent units), named "<test> on prompt means"
  sizes / power   n = (z s / h)^2 for an interval; paired n from (t_{1-a'/2} + t_{power})^2 (s_d / d)^2 / E,
                  a' = a / m Holm's first level, E = 3/pi the Wilcoxon efficiency; in prompts x samples through the
                  within-prompt correlation rho: a prompt's mean of m samples has variance s^2 (1 + (m-1) rho) / m
docs/compare.md and docs/report.md state the formulas; tests/test_stats.py checks coverage and false positives
by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE, POWER, ALPHA = 0.95, 0.80, 0.05
SUMMARY_RESAMPLES = 2000   # the summary's intervals (one per model x metric: many, so fewer resamples)
PAIRED_RESAMPLES = 9999    # compare's interval of a mean paired difference
RANK_EFFICIENCY = 3 / math.pi   # Wilcoxon (and Mann-Whitney) vs the t-test on normal data (Pitman ARE)
PROMPT_MEANS = " on prompt means"   # appended to a test's name when it ran on per-prompt mean differences


# ---------------------------------------------------------------- clusters

def cluster_codes(clusters, n: int) -> tuple[np.ndarray, int]:
    """(code per item, number of clusters), clusters numbered in order of first appearance; None: every item its
    own cluster."""
    if clusters is None:
        return np.arange(n), n
    codes, uniques = pd.factorize(pd.Series(list(clusters), dtype=object), sort=False, use_na_sentinel=False)
    if len(codes) != n:
        raise ValueError(f"{len(codes)} cluster labels for {n} items")
    return codes.astype(int), len(uniques)


def prompt_clusters(prompts, ids) -> list:
    """A cluster label per item: its prompt, or where the prompt is unknown (empty or missing: external videos
    scored without a prompt file) the item's own id, so that unknown prompts are never pooled into one."""
    return [p if isinstance(p, str) and p != "" else ("\0unknown prompt", i) for p, i in zip(prompts, ids)]


def all_singletons(clusters, n: int) -> bool:
    """Every cluster holds one item (one sample a prompt): the clustered statistics reduce to the plain ones."""
    return cluster_codes(clusters, n)[1] == n


def cluster_means(values: np.ndarray, clusters) -> np.ndarray:
    """The mean of each cluster's values, clusters in order of first appearance."""
    values = np.asarray(values, dtype=float)
    codes, k = cluster_codes(clusters, len(values))
    return np.bincount(codes, weights=values, minlength=k) / np.bincount(codes, minlength=k)


def icc(values, clusters) -> float:
    """Within-cluster (intraclass) correlation by the one-way random-effects ANOVA estimator, truncated to [0, 1]:
    rho = s_b^2 / (s_b^2 + MSW), s_b^2 = (MSB - MSW) / n0, n0 the unbalanced-design cluster size
    (sum n_i - sum n_i^2 / N) / (k - 1). nan below two clusters or with one item in each. Written out: scipy has no
    ICC, and a mixed model (statsmodels) is an iterative fit for what ANOVA's moments give in closed form."""
    y = np.asarray(values, dtype=float)
    codes, k = cluster_codes(clusters, len(y))
    size = np.bincount(codes, minlength=k).astype(float)
    n = len(y)
    if k < 2 or n <= k:
        return float("nan")
    means = np.bincount(codes, weights=y, minlength=k) / size
    msb = float((size * (means - y.mean()) ** 2).sum() / (k - 1))
    msw = float(((y - means[codes]) ** 2).sum() / (n - k))
    n0 = (n - (size ** 2).sum() / n) / (k - 1)
    between = (msb - msw) / n0
    if between + msw <= 0:   # every value equal: no spread to split
        return float("nan")
    return float(min(1.0, max(0.0, between / (between + msw))))


def design_effect(rho: float, m: float) -> float:
    """Variance of a mean over prompts of m correlated samples against m independent ones: 1 + (m - 1) rho."""
    if m <= 1 or not np.isfinite(rho):
        return 1.0
    return 1.0 + (m - 1) * rho


def prompt_sd(s: float, rho: float, m: float) -> float:
    """The standard deviation of a prompt's mean of m samples, from the per-video s and within-prompt rho: the
    unit the clustered intervals, tests and sizes count in. m = 1 (or rho unknown at m = 1): s itself."""
    if m <= 1:
        return s
    return s * math.sqrt(design_effect(0.0 if not np.isfinite(rho) else rho, m) / m)


# ---------------------------------------------------------------- intervals

def _percentile(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def bootstrap_interval(items: Sequence, aggregate: Callable[[list], float] | None = None, clusters=None,
                       seed: int = 0, n_resamples: int = SUMMARY_RESAMPLES, confidence: float = CONFIDENCE,
                       scores=None) -> tuple[float, float]:
    """Percentile bootstrap of `aggregate(items)`, resampling clusters (prompts) with all their items; (nan, nan)
    below two clusters. `aggregate` None: the plain mean of `scores` (or of the items), vectorised. By hand, not
    scipy.stats.bootstrap: an aggregate reads whole records (frame and pair counts), and the draws stay the ones
    the summary made before prompts were resampled (one sample a prompt: the same interval, bit for bit)."""
    n = len(items)
    codes, k = cluster_codes(clusters, n)
    if k < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_resamples, k))   # (resamples, clusters)
    if aggregate is None:
        values = np.asarray(items if scores is None else scores, dtype=float)
        if k == n:   # one item a cluster (codes = 0..n-1): the plain bootstrap over items
            return _percentile(values[draws].mean(axis=1), confidence)
        sums, sizes = np.bincount(codes, weights=values, minlength=k), np.bincount(codes, minlength=k)
        return _percentile(sums[draws].sum(axis=1) / sizes[draws].sum(axis=1), confidence)
    members = [np.flatnonzero(codes == c) for c in range(k)]   # the items of each cluster, in their order
    resampled = [aggregate([items[i] for c in d for i in members[c]]) for d in draws]
    return _percentile(np.asarray(resampled, dtype=float), confidence)


def mean_interval(differences: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = PAIRED_RESAMPLES,
                  seed: int = 0, clusters=None) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (compare's: of the paired differences), resampling values, or
    prompts with all their values when a prompt has several (scipy.stats.bootstrap, seeded: reproducible)."""
    differences = np.asarray(differences, dtype=float)
    if np.ptp(differences) == 0:  # every resample has the same mean
        return float(differences[0]), float(differences[0])
    rng = np.random.default_rng(seed)
    codes, k = cluster_codes(clusters, len(differences))
    if k < 2:   # one prompt: nothing to resample
        return float("nan"), float("nan")
    if k == len(differences):
        result = stats.bootstrap((differences,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                                 method="percentile", batch=1000, rng=rng)
    else:   # the mean over resampled prompts' pairs: their summed differences over their summed counts
        sums = np.bincount(codes, weights=differences, minlength=k)
        sizes = np.bincount(codes, minlength=k).astype(float)
        result = stats.bootstrap((sums, sizes), lambda s, c, axis: s.sum(axis=axis) / c.sum(axis=axis),
                                 paired=True, n_resamples=n_resamples, confidence_level=confidence,
                                 method="percentile", batch=1000, rng=rng)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# ---------------------------------------------------------------- paired tests

def is_binary(*arrays) -> bool:
    """Every score is 0 or 1 (a pass/fail metric): the sign test is exact for it."""
    return all(np.isin(a, (0.0, 1.0)).all() for a in arrays)


def sign_test(base: np.ndarray, new: np.ndarray) -> float:
    """Exact two-sided sign test on the discordant pairs (new above / below base; for 0/1 scores exact
    McNemar)."""
    gained, lost = int((new > base).sum()), int((new < base).sum())
    if gained + lost == 0:
        return 1.0
    return float(stats.binomtest(gained, gained + lost, 0.5).pvalue)


def wilcoxon_test(base: np.ndarray, new: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p on the paired differences (zeros dropped, scipy's default)."""
    if np.all(new == base):  # no non-zero difference: nothing to rank, no evidence of a change
        return 1.0
    return float(stats.wilcoxon(new, base).pvalue)


def paired_test(base: np.ndarray, new: np.ndarray, clusters=None) -> tuple[str, float]:
    """(test name, two-sided p): exact sign test for 0/1 metrics, else Wilcoxon signed-rank; when a prompt
    (`clusters`) has several samples, the same test on the per-prompt means (a prompt's samples are not
    independent pairs), its name ending PROMPT_MEANS."""
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    name = "sign" if is_binary(base, new) else "wilcoxon"
    suffix = ""
    if clusters is not None and not all_singletons(clusters, len(base)):
        base, new, suffix = cluster_means(base, clusters), cluster_means(new, clusters), PROMPT_MEANS
    p = sign_test(base, new) if name == "sign" else wilcoxon_test(base, new)
    return name + suffix, p


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped)  # adjusted p-values never decrease down the ranking
    return adjusted


def paired_summary(base: np.ndarray, new: np.ndarray, clusters=None, confidence: float = CONFIDENCE,
                   n_resamples: int = PAIRED_RESAMPLES, seed: int = 0) -> dict:
    """Means, delta, paired test and interval of one paired comparison; `n_prompts` and `sd_diff` count in the
    test's units (prompts when a prompt has several samples, else pairs)."""
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    test, p = paired_test(base, new, clusters)
    low, high = mean_interval(new - base, confidence, n_resamples, seed, clusters)
    singletons = clusters is None or all_singletons(clusters, len(base))
    units = (new - base) if singletons else cluster_means(new - base, clusters)
    return {"n_pairs": len(base), "n_prompts": len(units), "mean_base": float(base.mean()),
            "mean_new": float(new.mean()), "delta": float(new.mean() - base.mean()), "ci_low": low, "ci_high": high,
            "test": test, "p_value": p, "sd_diff": float(np.std(units, ddof=1)) if len(units) > 1 else float("nan")}


# ---------------------------------------------------------------- sizes, detectable differences and power

def z(p: float) -> float:
    """The standard normal quantile."""
    return float(stats.norm.ppf(p))


def _ceil(x: float) -> float:
    """Sample sizes are whole and at least 2 (a spread needs two); nan stays nan."""
    return float(max(2, math.ceil(x - 1e-9))) if np.isfinite(x) else float("nan")


def halfwidth(s: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Normal-approximation half-width of a mean's interval over n independent units."""
    return z(0.5 + confidence / 2) * s / math.sqrt(n) if n > 0 else float("nan")


def n_for_halfwidth(s: float, h: float, confidence: float = CONFIDENCE) -> float:
    """Independent units for a half-width h: (z s / h)^2."""
    return _ceil((z(0.5 + confidence / 2) * s / h) ** 2) if h > 0 else float("nan")


def holm_level(alpha: float, m: int) -> float:
    """The level the smallest of m p-values must beat under Holm (Bonferroni's, for the first step)."""
    return alpha / max(1, m)


def _quantiles(n: float, alpha: float, m: int, power: float) -> float:
    """t_{n-1,1-a'/2} + t_{n-1,power} (z's for n = inf)."""
    df = max(n - 1, 1)
    return float(stats.t.ppf(1 - holm_level(alpha, m) / 2, df) + stats.t.ppf(power, df))


def paired_mde(s_d: float, n: int, alpha: float = ALPHA, m: int = 1, power: float = POWER) -> float:
    """Smallest paired mean difference detected with `power` at n pairs, two-sided at Holm's first level."""
    if n < 2:
        return float("nan")
    return _quantiles(n, alpha, m, power) * s_d / math.sqrt(RANK_EFFICIENCY * n)


def _solve_n(scale: float, alpha: float, m: int, power: float) -> float:
    """The smallest n with n >= (quantiles(n) * scale)^2 / E (the t quantiles shrink as n grows)."""
    from scipy.optimize import brentq

    if not np.isfinite(scale):
        return float("nan")

    def excess(n):   # increasing in n: n grows, the needed n shrinks
        return n - (_quantiles(n, alpha, m, power) * scale) ** 2 / RANK_EFFICIENCY

    if excess(2) >= 0:
        return 2.0
    hi = max(4.0, 2 * (_quantiles(float("inf"), alpha, m, power) * scale) ** 2 / RANK_EFFICIENCY)
    while excess(hi) < 0:
        hi *= 2
    return _ceil(brentq(excess, 2, hi, xtol=1e-9))


def paired_n(s_d: float, delta: float, alpha: float = ALPHA, m: int = 1, power: float = POWER) -> float:
    """Pairs (or prompts, with s_d a prompt mean's spread) needed to detect a mean paired difference `delta`."""
    if not delta:
        return float("nan")
    return _solve_n(s_d / abs(delta), alpha, m, power)


def unpaired_n(s: float, delta: float, alpha: float = ALPHA, m: int = 1, power: float = POWER) -> float:
    """Videos (or prompts) per model to detect a difference `delta` between two models on unrelated samples."""
    if not delta:
        return float("nan")
    return _solve_n(math.sqrt(2) * s / abs(delta), alpha, m, power)


def units(n_pairs: int, n_prompts: int) -> str:
    """What a paired comparison's n counts: "n = 30" pairs, or "16 prompts" when a prompt has several samples."""
    return f"n = {int(n_pairs)}" if int(n_prompts) == int(n_pairs) else f"{int(n_prompts)} prompts"


def as_prompts(n: float, samples: int) -> str:
    """n videos as prompts x samples (prompts rounded up)."""
    if not np.isfinite(n):
        return "–"
    samples = max(1, int(samples))
    return f"{int(n)} ({math.ceil(n / samples)} × {samples})"
