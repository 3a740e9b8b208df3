"""Numeric command-line flags checked where they are parsed: argparse `type=` functions for every command.

A zero, negative, non-finite or absurd value is refused by argparse itself (one line naming the flag, exit 2)
before anything runs, so no command ever records a number it could not honour.
"""

from __future__ import annotations

import argparse
import math


def int_in(low: int, high: int | None = None):
    """argparse type: an integer in [low, high] (high None: unbounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message: "invalid integer value"
    return parse


def float_in(low: float, high: float, low_open: bool = False):
    """argparse type: a finite float in [low, high] ((low, high] with low_open); NaN and inf are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {value:g}")
        return value

    parse.__name__ = "number"
    return parse


# The bounds every command shares. "Absurd" is what no run on this harness can mean: beyond them a run would
# spend hours or exhaust memory before failing, rather than refuse at once.
positive_int = int_in(1)
nonnegative_int = int_in(0)
seed_int = int_in(0, 2**63 - 1)                      # torch.manual_seed's range
steps_int = int_in(1, 10_000_000)                    # optimisation steps of a run
threads_int = int_in(1, 1024)
sampling_steps_int = int_in(1, 1000)                 # Euler steps per pyramid stage
frames_int = int_in(1, 1 + 8 * 64)                   # pixel frames: up to 64 latent frames (paper: 31)
size_int = int_in(64, 1024)                          # pixels per side (the model's multiple is checked later)
learning_rate = float_in(0.0, 10.0, low_open=True)
guidance_float = float_in(0.0, 100.0)                # CFG scale; 1 is plain conditional sampling
fps_float = float_in(0.0, 1000.0, low_open=True)
nonnegative_float = float_in(0.0, 1e12)


def name_list(text: str) -> list[str]:
    """argparse type for comma-separated names (--dims): no empty list, no empty or repeated item."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names without empty items, got {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"names {repeated} repeated in {text!r}")
    return names
