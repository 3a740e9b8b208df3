"""Wall-clock and peak-memory measurement shared by the benchmarks."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

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


def best_of(fn, repeats: int, device: str = "cpu") -> tuple[object, Measurement]:
    """Minimum time over `repeats` runs (after the caller's warm-up); memory of the largest run."""
    best, result = None, None
    for _ in range(max(1, repeats)):
        result, m = measure(fn, device)
        if best is None:
            best = m
        else:
            best = Measurement(min(best.seconds, m.seconds), max(best.peak_extra_mb, m.peak_extra_mb))
    return result, best
