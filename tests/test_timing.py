"""Timing as a benchmark (issue 29): warm-up, median with an order-statistic interval, machine load; escaped
markdown cells; Pareto labels that do not overprint. No assertion on real speed: fakes with generous margins."""

import json
import math
import os
import re
import time

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.compute import measure
from benchmarks.compute.measure import machine_load, median_interval, median_ranks, timed
from benchmarks.core.outputs import markdown_cell, markdown_row


def _cells(line: str) -> list[str]:
    """A markdown table row split as GFM does: on `|` not preceded by a backslash; `\\|` read back as `|`."""
    inner = line.strip()[1:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


# --- median_interval ---------------------------------------------------------------------------------------------

def test_median_interval_matches_a_hand_computation():
    # n = 10: P(B <= 1) = 11/1024 for B ~ Bin(10, 1/2), so [x_(2), x_(9)] covers the median with probability
    # 1 - 22/1024 = 0.9785 >= 0.95, while [x_(3), x_(8)] has 1 - 2 * 56/1024 = 0.891 < 0.95.
    values = [7, 3, 10, 1, 5, 9, 2, 8, 4, 6]
    assert median_interval(values) == (5.5, 2.0, 9.0)
    assert median_ranks(10) == (1, 8, pytest.approx(1 - 22 / 1024))
    # n = 5: even min-max covers only 1 - 2/32 = 0.9375 < 0.95; it is the best there is, and its coverage is said
    assert median_interval([30, 10, 20, 50, 40]) == (30.0, 10.0, 50.0)
    assert median_ranks(5) == (0, 4, pytest.approx(1 - 2 / 32))
    # n = 20: the tabulated 95% ranks for the median are the 6th and 15th order statistics
    lo, hi, coverage = median_ranks(20)
    assert (lo + 1, hi + 1) == (6, 15) and coverage == pytest.approx(0.9586, abs=1e-4)
    assert median_interval(range(1, 21)) == (10.5, 6.0, 15.0)


def test_median_interval_edge_cases():
    median, low, high = median_interval([4.0])
    assert median == 4.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in median_interval([]))


def test_median_interval_covers_the_true_median_as_often_as_it_says():
    # skewed like timings (exponential): true median ln 2; 4000 samples of 10 -> coverage 0.9785 +- ~0.007
    rng = np.random.default_rng(0)
    samples = rng.exponential(size=(4000, 10))
    covered = [low <= math.log(2) <= high for _, low, high in map(median_interval, samples)]
    assert np.mean(covered) == pytest.approx(median_ranks(10)[2], abs=0.015)


# --- timed -------------------------------------------------------------------------------------------------------

class _SlowFirst:
    """A callable whose first call is slow (compilation), every later one fast."""

    def __init__(self, first: float = 0.4):
        self.first, self.calls = first, 0

    def __call__(self):
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.first)
        return self.calls


def test_warm_up_is_not_in_the_median():
    fn = _SlowFirst()
    t = timed(fn, warmup=1, repeats=5)
    assert fn.calls == 6 and len(t.seconds) == 5 and len(t.warmup_seconds) == 1
    assert t.warmup_seconds[0] >= 0.4
    assert t.max < 0.2 and t.median < 0.2  # the slow first call is in no timed repeat
    assert t.result == 6  # the last call's value
    assert t.low <= t.median <= t.high and t.min <= t.low and t.high <= t.max


def test_without_warm_up_the_first_call_is_timed():
    t = timed(_SlowFirst(), warmup=0, repeats=3)
    assert t.seconds[0] >= 0.4 and t.warmup_seconds == []


def test_timed_summary_is_that_of_its_repeats(monkeypatch):
    # a fake clock: each measure() call takes the next of these durations
    durations = iter([9.0, 3.0, 1.0, 2.0, 5.0, 4.0])
    monkeypatch.setattr(measure, "measure",
                        lambda fn, device="cpu": (fn(), measure.Measurement(next(durations), 1.5)))
    t = timed(lambda: None, warmup=1, repeats=5)
    assert t.warmup_seconds == [9.0] and t.seconds == [3.0, 1.0, 2.0, 5.0, 4.0]
    assert (t.median, t.low, t.high, t.min, t.max) == (3.0, 1.0, 5.0, 1.0, 5.0)
    assert t.coverage == pytest.approx(1 - 2 / 32) and t.peak_extra_mb == 1.5
    assert t.columns("s") == {"s": 3.0, "s_ci_low": 1.0, "s_ci_high": 5.0, "s_min": 1.0, "s_max": 5.0,
                              "s_repeats": 5}
    assert "3 s" in t.describe() and "n=5" in t.describe()
    assert set(t.load_start) == set(t.load_end) == set(machine_load())


def test_timed_refuses_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        timed(lambda: None, repeats=0)


def test_machine_load_records_threads_cpus_and_load():
    from benchmarks.core.provenance import cpu_kernels, cpu_model

    load = machine_load()
    assert set(load) == {"torch_threads", "cpu_count", "cpus_available", "cpu_model", "cpu_kernels",
                         "load_avg_1m", "load_avg_5m", "load_avg_15m"}
    assert load["torch_threads"] == torch.get_num_threads() and load["cpu_count"] == os.cpu_count()
    assert 1 <= load["cpus_available"] <= load["cpu_count"]
    assert load["cpu_model"] == cpu_model() and load["cpu_kernels"] == cpu_kernels()
    assert all(load[k] >= 0 for k in ("load_avg_1m", "load_avg_5m", "load_avg_15m"))
    json.dumps(load)  # goes into results JSON as it is


# --- markdown cells ----------------------------------------------------------------------------------------------

def test_markdown_cell_escapes_pipes_and_line_breaks():
    assert markdown_cell("attention | Mamba") == "attention \\| Mamba"
    assert markdown_cell("two\nlines") == "two lines"
    assert markdown_cell(1.5) == "1.5"
    row = markdown_row(["parallel (attention | Mamba)", "x|y|z", 3])
    assert _cells(row) == ["parallel (attention | Mamba)", "x|y|z", "3"]


def test_paper_table_rows_keep_their_columns_with_a_pipe_in_a_label():
    from benchmarks.paper.paper_tables import TABLES, markdown

    table = TABLES["table4"]
    assert any("|" in r.label for r in table.rows)  # the case the escaping is for
    df = pd.DataFrame([{"paper_row": r.label, "model": r.key, "note": "", "paper_seconds": 1.0}
                       for r in table.rows])
    directions = pd.DataFrame([{"contrast": f"{table.rows[1].label} vs {table.rows[0].label}",
                                "metric": "fast_average", "paper_delta": 0.13, "delta": 1.0, "ci_low": 0.0,
                                "ci_high": 2.0, "p_holm": 0.5, "verdict": "unresolved"}])
    text = markdown("table4", df, directions)
    blocks = [[line for line in block.splitlines() if line.startswith("|")] for block in text.split("\n\n")]
    tables = [b for b in blocks if b]
    assert len(tables) == 2
    for lines in tables:
        assert len({len(_cells(line)) for line in lines}) == 1  # every row as many cells as the header
    labels = [_cells(line)[0] for line in tables[0][2:]]
    assert labels == [r.label for r in table.rows]
    assert _cells(tables[1][2])[0] == f"{table.rows[1].label} vs {table.rows[0].label}"


# --- Pareto plot -------------------------------------------------------------------------------------------------

def _summary(rows):
    # summary.csv's compute columns: the whole model's TFLOPs beside the mixer's (here twice the mixer's)
    return pd.DataFrame([{"model": m, "tflops_per_video": 2 * x, "mixer_tflops_per_video": x, "q": y,
                          "q_ci_low": y - 0.05, "q_ci_high": y + 0.05} for m, x, y in rows])


def test_pareto_labels_of_coincident_models_do_not_overprint():
    from benchmarks.reporting.writers import label_box, pareto_figure, pareto_png

    # m4v-tiny and m4v-tiny-reward: the same architecture, so the same compute; close quality
    summary = _summary([("m4v-tiny", 0.0058, 0.320), ("m4v-tiny-reward", 0.0058, 0.321),
                        ("dit-tiny", 0.0027, 0.30), ("parallel", 0.0067, 0.33)])
    fig = pareto_figure(summary, "q")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): label_box(t, renderer) for t in ax.texts}
    assert set(labels) == set(summary["model"])
    names = sorted(labels)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not labels[a].overlaps(labels[b]), (a, b)
    # x in GFLOPs per video: the points sit at 2.7 ... 6.7, inside the axis; tick labels readable and apart
    assert "GFLOPs" in ax.get_xlabel()
    low, high = ax.get_xlim()
    assert low < 2.7 and 6.7 < high and high < 20
    ticks = [t for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
    assert len(ticks) >= 3
    boxes = [t.get_window_extent(renderer) for t in ticks]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert all(float(t.get_text().replace("−", "-")) == pytest.approx(t.get_position()[0]) for t in ticks)
    assert pareto_png(summary, "q")[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_nothing_to_plot():
    from benchmarks.reporting.writers import pareto_figure, pareto_png

    summary = _summary([("a", float("nan"), 0.3)])
    assert pareto_figure(summary, "q") is None and pareto_png(summary, None) is None
