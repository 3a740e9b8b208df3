"""A VBench-shaped folder end to end (issue 37's closing note): `python -m benchmarks.perf.vbench_folder OUT` writes
the folder VBench's sampler would for some of VBench_full_info.json's prompts (5 samples each, 25 for a
temporal_flickering prompt, VBench's names, plus files VBench ignores), runs `m4v-bench eval --prompts` on it with
every dimension that runs offline, and writes OUT/timing.json (wall seconds, videos, command, the run's git commit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.core.provenance import provenance
from benchmarks.run.suites import vbench_full_info_path
from evaluators.prompts import load_full_info
from evaluators.vbench.protocol import samples_read
from evaluators.video import write_video

FRAMES, SIZE, FPS = 16, 128, 8


def moving_texture(seed: int, still: bool) -> np.ndarray:
    """(FRAMES, SIZE, SIZE, 3) uint8: a smooth random texture, shifted a pixel a frame unless `still`."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (SIZE // 8, SIZE // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    return np.stack([base if still else np.roll(base, t, axis=1) for t in range(FRAMES)])


def write_folder(folder: Path, per_dimension: int = 2) -> list[str]:
    """`per_dimension` prompts of each VBench prompt list (the first flickering prompt: 25 samples); -> names."""
    entries, seen, names = load_full_info(vbench_full_info_path()), {}, []
    for entry in entries:
        key = tuple(entry["dimension"])
        if seen.get(key, 0) >= per_dimension or entry["prompt_en"] in {n.rsplit("-", 1)[0] for n in names}:
            continue
        seen[key] = seen.get(key, 0) + 1
        for i in range(max(samples_read(d) for d in entry["dimension"])):
            name = f"{entry['prompt_en']}-{i}.mp4"
            write_video(folder / name, moving_texture(len(names), "temporal_flickering" in key), fps=FPS)
            names.append(name)
    counts = {}
    for n in names:
        counts[n.rsplit("-", 1)[0]] = counts.get(n.rsplit("-", 1)[0], 0) + 1
    five = next(p for p, n in counts.items() if n == 5)
    for extra in ("my own clip-0.mp4", f"{five}-7.mp4"):   # VBench reads neither (-7 of a 5-sample prompt)
        write_video(folder / extra, moving_texture(len(names), False), fps=FPS)
    return names


def main(out: str) -> None:
    out = Path(out)
    folder = out / "videos"
    names = write_folder(folder)
    command = [sys.executable, "-m", "benchmarks.cli", "eval", "--videos", str(folder), "--prompts",
               str(vbench_full_info_path()), "--no-cache", "--out", str(out / "run")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    ignored = [line for line in done.stderr.splitlines() if "files ignored" in line]
    record = {**provenance(config={"frames": FRAMES, "size": SIZE, "fps": FPS}), "command": " ".join(command[1:]),
              "exit": done.returncode, "videos_read": len(names), "wall_seconds": round(wall, 1),
              "load_average": os.getloadavg(), "ignored_line": ignored[0] if ignored else None}
    (out / "timing.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps({k: record[k] for k in ("exit", "videos_read", "wall_seconds", "ignored_line")}))
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
