"""How long `m4v-bench` takes to answer: wall time of fresh processes (`--help`, `run --help`, ...), each command
run `--repeats` times after `--warmup` untimed runs, reported as the median and the min-max.

    python -m benchmarks.perf.cli_bench                        # this checkout: --help and run --help
    python -m benchmarks.perf.cli_bench --tree /tmp/old         # another checkout's benchmarks/, m4v/, evaluators/
    python -m benchmarks.perf.cli_bench --args "generate --prompt 'a red ball' --frames 2 --out /tmp/v.mp4 --overwrite"

Each process is `python -m benchmarks.cli ARGS` with the tree first on the path, so two trees (e.g. one exported
with `git archive`) are compared on the same interpreter and libraries. Every run's exit status must be 0. The
standard library only: the measuring process imports nothing it measures. A loaded machine is slower; the load
average is printed beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_ARGS = ("--help", "run --help")


def time_command(args: list[str], tree: Path, repeats: int, warmup: int) -> list[float]:
    """Seconds of each timed run of `python -m benchmarks.cli ARGS` in `tree` (warm-up runs untimed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    command = [sys.executable, "-m", "benchmarks.cli", *args]
    seconds = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"cli_bench: `m4v-bench {shlex.join(args)}` exited {done.returncode}: "
                             f"{done.stderr.strip().splitlines()[-1:] or ''}")
        if i >= warmup:
            seconds.append(elapsed)
    return seconds


def summary(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "repeats": len(seconds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.cli_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[2],
                        help="checkout whose benchmarks/ is run (default: this one)")
    parser.add_argument("--args", action="append", help="the command line after m4v-bench, repeatable "
                        f"(default: {' and '.join(repr(a) for a in DEFAULT_ARGS)})")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (the OS file cache)")
    parser.add_argument("--out", type=Path, help="write the numbers to this JSON file")
    options = parser.parse_args(argv)
    if options.repeats < 1 or options.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    load_start = os.getloadavg()[0]
    rows = []
    for line in options.args or DEFAULT_ARGS:
        row = {"command": f"m4v-bench {line}",
               **summary(time_command(shlex.split(line), options.tree.resolve(), options.repeats, options.warmup))}
        rows.append(row)
        print(f"{row['command']:60s} median {row['median_s']:.2f} s  (min-max {row['min_s']:.2f}-{row['max_s']:.2f}, "
              f"{row['repeats']} runs)")
    load_end = os.getloadavg()[0]
    print(f"tree {options.tree}; 1-min load average {load_start:.2f} at the start, {load_end:.2f} at the end, "
          f"{os.cpu_count()} CPUs")
    if options.out:
        options.out.write_text(json.dumps({"tree": str(options.tree), "rows": rows, "load_start": load_start,
                                           "load_end": load_end, "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
