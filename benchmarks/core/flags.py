"""The bounds of every number the harness takes, in one table (`BOUNDS`), wherever the number enters.

A flag is typed by its entry (argparse refuses a zero, negative, non-finite or absurd value in one line naming
the flag, exit 2); a TOML suite, `train --option`, training.json and state.pt check their numbers against the
same entries (`Bound.check` / `Bound.parse_text`, a ValueError naming the file and key). So no command starts
work it cannot finish, or records a number it could not honour. `estimate_memory` / `check_fits` refuse a run
whose working set cannot fit the machine, with the estimate.
"""

from __future__ import annotations

import argparse
import math
import numbers
import sys

from benchmarks.core.errors import CompareError


class Bound:
    """One named quantity's range: integers in [low, high], or finite numbers in [low, high] (either end open
    when asked). The same object types an argparse flag (`type=BOUNDS["frames"]`), checks a number read from a
    file (`check(value, where)`: TOML suites, training.json, state.pt) and parses a `KEY=VALUE` option
    (`parse_text(text, where)`), so a number is refused the same way, with the bound, wherever it enters."""

    def __init__(self, what: str, low, high, integer: bool = True, low_open: bool = False, high_open: bool = False):
        self.what, self.low, self.high, self.integer = what, low, high, integer
        self.low_open, self.high_open = low_open, high_open
        self.__name__ = "integer" if integer else "number"  # argparse names the type in its message

    def describe(self) -> str:
        if self.integer:
            return f"an integer in [{self.low}, {self.high}]"
        if self.high >= sys.float_info.max:
            return f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        return (f"a finite number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            return False
        if not self.integer and not math.isfinite(value):
            return False
        return ((value > self.low if self.low_open else value >= self.low)
                and (value < self.high if self.high_open else value <= self.high))

    def check(self, value, where: str):
        """A number read from a file or built by code: -> it (a float for a real-valued bound), or ValueError
        '{where} must be {the bound}, got {value}'."""
        if not self.contains(value):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(f"{where} must be {self.describe()}, got {shown}")
        return value if self.integer else float(value)

    def parse_text(self, text: str, where: str):
        """A number written as text (a KEY=VALUE option): -> it, or ValueError naming `where` and the bound."""
        try:
            return self.check(self._number(text), where)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be {self.describe()}, got {text!r}") from None

    def _number(self, text: str):
        return int(text, 10) if self.integer else float(text)

    def __call__(self, text: str):
        """argparse type: the flag's text -> the number, or argparse's one line naming the flag and the bound."""
        try:
            value = self._number(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}")
        return value


def int_in(low: int, high: int | None = None) -> Bound:
    """argparse type: an integer in [low, high] (high None: any size a 64-bit count holds)."""
    return Bound("integer", low, 2**63 - 1 if high is None else high)


def float_in(low: float, high: float, low_open: bool = False) -> Bound:
    """argparse type: a finite float in [low, high] ((low, high] with low_open); NaN and inf are refused."""
    return Bound("number", low, high, integer=False, low_open=low_open)


# THE bounds table: every number a command takes, from a flag, a TOML suite, `train --option`, or a file a run
# reads back (training.json, state.pt), is checked against its entry here. "Absurd" is what no run on this
# harness can mean: beyond these a run would spend hours or exhaust memory before failing, rather than refuse.
STEPS_MAX = 10_000_000
BOUNDS = {
    "seed": Bound("seed", 0, 2**63 - 1),                              # torch.manual_seed's range
    "steps": Bound("optimisation steps", 1, STEPS_MAX),              # of a training run (and a step reached)
    "step_count": Bound("steps", 0, STEPS_MAX),                       # warm-up / ramp lengths (0: none)
    "sampling_steps": Bound("Euler steps per pyramid stage", 1, 1000),
    "frames": Bound("frames", 1, 1 + 8 * 64),                         # up to 64 latent frames (paper: 31)
    "size": Bound("pixels per side", 64, 1024),                       # generate --size (the model's multiple later)
    "side": Bound("pixels per side", 32, 1024),                       # a suite's sampling.height / width
    "fps": Bound("frames per second", 0.0, 1000.0, integer=False, low_open=True),
    "guidance": Bound("guidance scale", 0.0, 100.0, integer=False),  # CFG scale; 1 is plain conditional sampling
    # a suite's guidance: >= 1 and finite (an overflowing one fails its samples, never scores: issue 33 item 2)
    "suite_guidance": Bound("guidance scale", 1.0, sys.float_info.max, integer=False),
    "per_kind": Bound("world prompts per kind", 1, 10_000),
    "samples": Bound("videos per prompt", 1, 1000),
    "prompt_limit": Bound("prompts", 1, 1_000_000),
    "prompts": Bound("prompts", 1, 10_000),                           # stage-quality --prompts
    "videos": Bound("videos in one run", 1, 100_000),                 # models x prompts x samples (VBench: ~5k)
    "batch": Bound("batch size", 1, 65536),
    "dataset_size": Bound("clips", 1, 1_000_000),
    "threads": Bound("threads", 1, 1024),
    "lr": Bound("learning rate", 0.0, 10.0, integer=False, low_open=True),
    "weight": Bound("weight", 0.0, 1e6, integer=False),              # stage weights, loss weights, decay
    "seconds": Bound("seconds", 0.0, 1e12, integer=False),
    "resamples": Bound("bootstrap resamples", 1, 100_000),
    "probability": Bound("probability", 0.0, 1.0, integer=False, low_open=True, high_open=True),
    "repeats": Bound("repeats", 1, 1000),
    "warmup": Bound("warm-up calls", 0, 100),
    "difference": Bound("difference", 0.0, sys.float_info.max, integer=False, low_open=True),  # plan --detect
    "video_frames": Bound("frames", 2, 1024),                         # bench-eval's synthetic videos (flow: 2)
    "video_side": Bound("pixels per side", 16, 4096),                 # a video the evaluators read (>= 16 px)
}

# `train --option KEY=VALUE`: the bound of each numeric recipe option (m4v/recipes); an option not listed is text
RECIPE_OPTION_BOUNDS = {
    "batch": "batch", "image_batch": "batch", "dataset_size": "dataset_size", "lr": "lr", "frames": "frames",
    "warmup": "step_count", "schedule_steps": "steps", "image_steps": "step_count", "history_noise_ramp": "step_count",
    "weight_decay": "weight", "kl": "weight", "motion": "weight", "edge": "weight", "dynamic": "weight",
    "video_lr_scale": "weight", "reward_weight": "weight",
}

# a generator adapter's numeric options and attributes (benchmarks/generators/): `diffusers:PATH?batch=..&fps=..`,
# a python: object's `max_batch` / `fps`; each is checked against its entry when the spec is resolved
ADAPTER_OPTION_BOUNDS = {"batch": "batch", "max_batch": "batch", "fps": "fps", "steps": "sampling_steps",
                         "guidance": "guidance", "frames": "frames", "height": "side", "width": "side"}

# the argparse types by their old names (every command's flags use these)
positive_int = int_in(1)
nonnegative_int = int_in(0)
seed_int = BOUNDS["seed"]
steps_int = BOUNDS["steps"]
threads_int = BOUNDS["threads"]
sampling_steps_int = BOUNDS["sampling_steps"]
frames_int = BOUNDS["frames"]
size_int = BOUNDS["size"]
learning_rate = BOUNDS["lr"]
guidance_float = BOUNDS["guidance"]
fps_float = BOUNDS["fps"]
nonnegative_float = BOUNDS["weight"]


# ---- memory: a run's working set, estimated before any work ------------------------------------------------
# Generating and scoring one pixel of one frame holds about 400 bytes at the peak on the tiny models (results/*/
# generation.csv: peak_mb ~400 MB for a batch of 16 videos of 16 frames at 64x64); 512 bytes is that with margin.
# The estimate is a floor (attention grows faster than the pixels), so a refused run could never have fit.
BYTES_PER_PIXEL_FRAME = 512
BASE_BYTES = 2**30                                                    # models, libraries, the interpreter


def machine_memory() -> int | None:
    """Bytes of memory this process may use: physical memory, or a lower cgroup limit; None if unknown."""
    import os

    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < 2**60:
            limits.append(int(text))
    return min(limits) if limits else None


def estimate_memory(videos_at_once: int, frames: int, height: int, width: int) -> int:
    """Bytes a run holds at its peak while it makes / scores `videos_at_once` videos of frames x height x width."""
    return BASE_BYTES + videos_at_once * frames * height * width * BYTES_PER_PIXEL_FRAME


def check_fits(where: str, videos_at_once: int, frames: int, height: int, width: int) -> int:
    """The estimate in bytes, or ValueError naming `where` with the estimate when the machine cannot hold it."""
    need, have = estimate_memory(videos_at_once, frames, height, width), machine_memory()
    if have is not None and need > have:
        raise ValueError(f"{where}: {videos_at_once} video(s) of {frames} frames at {height}x{width} at once need "
                         f"about {need / 2**30:.1f} GiB, more than this machine's {have / 2**30:.1f} GiB; use a "
                         "smaller batch, fewer frames or a smaller size")
    return need


def name_list(text: str) -> list[str]:
    """argparse type for comma-separated names (--dims): no empty list, no empty or repeated item."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or any(not n for n in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names without empty items, got {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"names {repeated} repeated in {text!r}")
    return names


def parse_pairs(items) -> list[tuple[str, str]]:
    """["BASE=NEW", ...] -> [(BASE, NEW), ...]."""
    pairs = []
    for item in items:
        base, sep, new = item.partition("=")
        if not sep or not base or not new:
            raise CompareError(f"--pair {item!r}: expected BASE_MODEL=NEW_MODEL")
        pairs.append((base, new))
    return pairs
