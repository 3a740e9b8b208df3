"""Wall-clock and peak-memory measurement shared by the benchmarks.

The rule every timing follows (issue 29): untimed warm-up calls first (numba compilation, cache loads, allocator
growth land there, not in the number), then several timed repeats reported as their median with a
distribution-free interval and the min-max, CUDA synchronised around each call, and the machine's load recorded
at the start and the end (a loaded 2-core machine is slower, and the number should say it was loaded).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    # /proc/self/statm's second field is the resident set in pages (Linux); a fresh read, unlike ru_maxrss,
    # which only ever grows and so cannot isolate one call's peak.
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass
class Measurement:
    seconds: float
    peak_extra_mb: float  # peak resident (CPU) or allocated (CUDA) memory above the level before the call


class _RssSampler(threading.Thread):
    """Samples RSS every `interval` seconds until stopped; keeps the maximum."""

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, _rss_bytes(), threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _rss_bytes())


def measure(fn, device: str = "cpu") -> tuple[object, Measurement]:
    """Run fn() once; return its result with seconds and peak extra memory."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return result, Measurement(seconds, (torch.cuda.max_memory_allocated() - base) / 2**20)
    base = _rss_bytes()
    sampler = _RssSampler()
    sampler.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    return result, Measurement(seconds, max(0, peak - base) / 2**20)


def machine_load() -> dict:
    """Torch threads, CPUs, CPU model and kernel ISA, and the 1/5/15-minute load averages, now."""
    from benchmarks.core.provenance import cpu_kernels, cpu_model

    try:
        available = len(os.sched_getaffinity(0))  # what this process may use (a container's share), not the host's
    except (AttributeError, OSError):
        available = os.cpu_count()
    try:
        load1, load5, load15 = os.getloadavg()
    except OSError:
        load1 = load5 = load15 = float("nan")
    return {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "cpus_available": available,
            "cpu_model": cpu_model(), "cpu_kernels": cpu_kernels(), "load_avg_1m": load1, "load_avg_5m": load5,
            "load_avg_15m": load15}


def describe_load(load: dict) -> str:
    """One line of machine_load(): threads, CPUs, model, ISA and the 1-minute load average."""
    return (f"{load['torch_threads']} torch threads on {load['cpus_available']} of {load['cpu_count']} CPUs "
            f"({load['cpu_model']}, {load['cpu_kernels']}), load average {load['load_avg_1m']:.2f}")


def median_ranks(n: int, level: float = 0.95) -> tuple[int, int, float]:
    """0-based ranks (lo, hi) of the order statistics bounding the median's interval, and its exact coverage."""
    from scipy.stats import binom

    # [x_(j), x_(n-j+1)] (1-based) covers the population median unless at most j-1 draws fall on one side of
    # it: coverage 1 - 2 P(B <= j-1), B ~ Binomial(n, 1/2). The largest j that still reaches `level`; below
    # n = 6 none reaches 95% and min-max is the best there is (its coverage is returned, so it can be said).
    j = 1
    while j + 1 <= n - j and 1 - 2 * binom.cdf(j, n, 0.5) >= level:
        j += 1
    return j - 1, n - j, float(1 - 2 * binom.cdf(j - 1, n, 0.5))


def median_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): the median with its order-statistic interval; NaN interval below two values."""
    # Order statistics, not a bootstrap: for independent repeats the interval is exact under any continuous
    # distribution (timings are skewed, with a long right tail from the scheduler), needs no seed, and with the
    # 3-10 repeats a benchmark affords a bootstrap of the median has a poorly calibrated coverage.
    xs = sorted(float(v) for v in values)
    if not xs:
        return float("nan"), float("nan"), float("nan")
    n = len(xs)
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    if n < 2:
        return median, float("nan"), float("nan")
    lo, hi, _ = median_ranks(n, level)
    return median, xs[lo], xs[hi]


@dataclass
class Timing:
    """Timed repeats of one call after its warm-up: seconds per repeat, median, interval, memory, machine load."""

    seconds: list                   # each timed repeat, in order
    warmup_seconds: list            # each untimed warm-up call (reported, never in the median)
    median: float
    low: float                      # order-statistic interval of the median (see median_interval)
    high: float
    coverage: float                 # the interval's exact coverage (below `level` when repeats < 6)
    peak_extra_mb: float            # largest over the timed repeats
    load_start: dict
    load_end: dict
    result: object = field(default=None, repr=False)  # the last call's return value

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)

    def columns(self, prefix: str = "seconds") -> dict:
        """Flat columns for a results row: PREFIX (the median), _ci_low, _ci_high, _min, _max, _repeats."""
        return {prefix: self.median, f"{prefix}_ci_low": self.low, f"{prefix}_ci_high": self.high,
                f"{prefix}_min": self.min, f"{prefix}_max": self.max, f"{prefix}_repeats": len(self.seconds)}

    def describe(self) -> str:
        """One line: median (interval), min-max, n."""
        text = f"{self.median:.4g} s"
        if not math.isnan(self.low):
            text += f" ({100 * self.coverage:.0f}% CI {self.low:.4g}-{self.high:.4g})"
        return text + f", min-max {self.min:.4g}-{self.max:.4g}, n={len(self.seconds)}"


def timed(fn, *, warmup: int = 1, repeats: int = 5, device: str = "cpu", level: float = 0.95) -> Timing:
    """Call fn() `warmup` times untimed, then `repeats` times timed (CUDA synchronised); -> Timing."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"timed: warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    load_start = machine_load()
    warm = []
    for _ in range(warmup):
        _, m = measure(fn, device)
        warm.append(m.seconds)
    seconds, peak, result = [], 0.0, None
    for _ in range(repeats):
        result, m = measure(fn, device)
        seconds.append(m.seconds)
        peak = max(peak, m.peak_extra_mb)
    median, low, high = median_interval(seconds, level)
    coverage = median_ranks(len(seconds), level)[2] if len(seconds) > 1 else float("nan")
    return Timing(seconds, warm, median, low, high, coverage, peak, load_start, machine_load(), result)
