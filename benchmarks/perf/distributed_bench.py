"""Throughput of training on your videos and of data-parallel training (issue 39 item 5), on CPU (or CUDA):

  encode   videos/s of `train --data`'s dataset encoding (PyAV decode + crop + vae-tiny + text-tiny), on mp4s this
           script writes, each repeat into a fresh latent cache
  train    dit-tiny steps/s and samples/s at a global batch, at 1 and 2 ranks (torchrun, gloo on CPU): each timed
           step between barriers, after untimed warm-up steps
  curves   (--curves) the loss curves of `m4v-bench train` in 1 process and on 2 torchrun ranks at the same global
           batch, for the recipes of CURVES, and their largest relative difference over every logged metric;
           --curves-only: only these (curves.csv, curves.json with their own provenance)

    python -m benchmarks.perf.distributed_bench --out results/distributed
    python -m benchmarks.perf.distributed_bench --curves-only --out results/distributed

Each number is a median with its order-statistic interval and min-max over the repeats (benchmarks/measure.py);
the machine's load average is recorded before and after (a shared machine is slower and noisier).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def write_clips(folder: Path, n: int, seconds: float = 2.5, fps: int = 24, height: int = 96, width: int = 128) -> Path:
    """n H.264 mp4s of moving coloured squares and their captions.csv; -> the captions file."""
    import av

    rng = np.random.default_rng(0)
    rows = ["path,text"]
    for k in range(n):
        frames = np.zeros((int(seconds * fps), height, width, 3), np.uint8)
        colour = rng.integers(0, 256, 3)
        for t, frame in enumerate(frames):
            x = (4 * t + 10 * k) % (width - 24)
            frame[36:60, x:x + 24] = colour
        with av.open(str(folder / f"clip{k}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        rows.append(f"clip{k}.mp4,a square moves right {k}")
    (folder / "captions.csv").write_text("\n".join(rows) + "\n")
    return folder / "captions.csv"


def bench_encode(videos: int, repeats: int, warmup: int) -> dict:
    """videos/s of encoding `videos` clips, each repeat into an empty cache."""
    from benchmarks.compute.measure import timed
    from m4v.captioned_videos import EncodedVideos, read_captions
    from m4v.recipes.denoiser import FrozenWorldEncoders
    from m4v.world.dataset import TRAIN_FRAMES, TRAIN_SIZE

    with tempfile.TemporaryDirectory() as tmp:
        clips = read_captions(write_clips(Path(tmp), videos))
        encoders = FrozenWorldEncoders()
        fingerprint = encoders.fingerprint()
        counter = iter(range(10**6))

        def encode_all():
            return EncodedVideos(clips, encoders.encode, fingerprint, Path(tmp) / f"cache{next(counter)}",
                                 TRAIN_FRAMES, TRAIN_SIZE, log=lambda m: None, progress=False)

        timing = timed(encode_all, warmup=warmup, repeats=repeats)
    rates = sorted(videos / s for s in timing.seconds)
    return {"bench": "encode", "ranks": 1, "videos": videos, **timing.columns("seconds"),
            "videos_per_s": videos / timing.median, "videos_per_s_ci_low": videos / timing.high,
            "videos_per_s_ci_high": videos / timing.low, "videos_per_s_min": rates[0], "videos_per_s_max": rates[-1],
            "load_start": timing.load_start["load_avg_1m"], "load_end": timing.load_end["load_avg_1m"]}


def worker(args) -> None:
    """One torchrun rank: dit-tiny steps at the global batch, each between barriers; rank 0 writes the seconds."""
    import torch

    from benchmarks.compute.measure import machine_load
    from benchmarks.run import distributed
    from m4v.recipes import get_recipe

    torch.set_num_threads(1)
    distributed.init_from_env(args.device)
    rank, world = distributed.world()
    recipe = get_recipe("dit-tiny")("dit-tiny", seed=0, batch=args.batch, dataset_size=16, device=args.device)
    recipe.rank, recipe.world_size = rank, world
    recipe.out, recipe.total_steps = Path(args.cache) / "run", args.warmup + args.repeats
    load_start = machine_load()
    seconds = []
    for i in range(args.warmup + args.repeats):
        distributed.barrier()
        start = time.perf_counter()
        recipe.step(i)
        distributed.barrier()
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
    if rank == 0:
        Path(args.result).write_text(json.dumps({"seconds": seconds, "load_start": load_start,
                                                 "load_end": machine_load()}))
    distributed.shutdown()


def bench_train(ranks: int, batch: int, repeats: int, warmup: int, device: str, cache: Path) -> dict:
    """steps/s and samples/s of dit-tiny at global batch `batch` on `ranks` torchrun ranks."""
    from benchmarks.compute.measure import median_interval

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cache / f"train-{ranks}.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-port",
               str(port), "-m", "benchmarks.perf.distributed_bench", "worker", "--batch", str(batch), "--repeats",
               str(repeats), "--warmup", str(warmup), "--device", device, "--cache", str(cache), "--result",
               str(result)]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"distributed_bench: {ranks} ranks failed: {done.stderr.strip()[-2000:]}")
    data = json.loads(result.read_text())
    median, low, high = median_interval(data["seconds"])
    steps = sorted(1 / s for s in data["seconds"])
    return {"bench": "train", "ranks": ranks, "batch": batch, "seconds": median, "seconds_ci_low": low,
            "seconds_ci_high": high, "seconds_min": min(data["seconds"]), "seconds_max": max(data["seconds"]),
            "seconds_repeats": len(data["seconds"]), "steps_per_s": 1 / median, "steps_per_s_ci_low": 1 / high,
            "steps_per_s_ci_high": 1 / low, "steps_per_s_min": steps[0], "steps_per_s_max": steps[-1],
            "samples_per_s": batch / median, "samples_per_s_ci_low": batch / high, "samples_per_s_ci_high": batch / low,
            "load_start": data["load_start"]["load_avg_1m"], "load_end": data["load_end"]["load_avg_1m"]}


CURVES = {   # recipe -> its tiny `train` arguments (global batch split 2 ways)
    "vae-tiny": ["--batch", "2", "--option", "image_batch=4"],
    "dit-tiny": ["--batch", "4", "--dataset-size", "8"],
    "m4v-tiny-reward": ["--batch", "2", "--dataset-size", "4"],
    "wan-tiny": ["--batch", "4", "--dataset-size", "4"],
    "m4v-wan-tiny": ["--batch", "4", "--dataset-size", "4"],          # from the shipped wan-tiny
    "m4v-wan-tiny-reward": ["--batch", "2", "--dataset-size", "4"],   # from the shipped m4v-wan-tiny
}


def bench_curves(tmp: Path, steps: int = 3) -> tuple[list, list]:
    """-> (every logged step of 1 process and of 2 ranks, per recipe the largest relative loss difference)."""
    import pandas as pd

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows, summary = [], []
    for recipe, extra in CURVES.items():
        train = ["-m", "benchmarks.cli", "train", "--model", recipe, "--steps", str(steps), "--quiet", *extra]
        curves = {}
        for ranks in (1, 2):
            out = tmp / f"{recipe}-{ranks}"
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            torchrun = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
            launch = [sys.executable, *(torchrun if ranks == 2 else [])]
            done = subprocess.run([*launch, *train, "--out", str(out), *(["--threads", "1"] if ranks == 1 else [])],
                                  cwd=REPO, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"distributed_bench: {recipe} on {ranks} rank(s) failed: {done.stderr[-2000:]}")
            curves[ranks] = pd.read_csv(out / "loss.csv").drop(columns=["seconds"])
            rows += [{"recipe": recipe, "ranks": ranks, **r} for r in curves[ranks].to_dict("records")]
        one, two = curves[1]["loss"].to_numpy(), curves[2]["loss"].to_numpy()
        metrics = [c for c in curves[1].columns if c != "step"]   # loss and what else the recipe logs
        every = np.abs(curves[2][metrics].to_numpy() - curves[1][metrics].to_numpy()) / np.abs(curves[1][metrics])
        summary.append({"recipe": recipe, "steps": steps, "train_arguments": " ".join(extra),
                        "max_rel_loss_diff": float(np.max(np.abs(two - one) / np.abs(one))),
                        "max_rel_diff_any_metric": float(np.nanmax(every.to_numpy()))})
    return rows, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="distributed_bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker")   # one torchrun rank (internal)
    for name, kind in (("--batch", int), ("--repeats", int), ("--warmup", int), ("--device", str),
                       ("--cache", str), ("--result", str)):
        w.add_argument(name, type=kind, required=True)
    parser.add_argument("--videos", type=int, default=8, help="clips encoded per repeat")
    parser.add_argument("--batch", type=int, default=8, help="global training batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--curves", action="store_true", help="also the 1- vs 2-rank loss curves of CURVES' recipes")
    parser.add_argument("--curves-only", action="store_true", help="only the curves (curves.csv, curves.json)")
    parser.add_argument("--out", help="directory for distributed_bench.csv / .json (and curves.csv)")
    args = parser.parse_args(argv)
    if args.command == "worker":
        worker(args)
        return 0
    import pandas as pd
    import torch

    from benchmarks.compute.measure import describe_load, machine_load
    from benchmarks.core.provenance import git_commit, provenance

    commit = git_commit()
    torch.set_num_threads(1)
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.perf.distributed_bench " + shlex.join(given)
    if args.curves_only:
        with tempfile.TemporaryDirectory() as tmp:
            curves, agreement = bench_curves(Path(tmp))
        print(pd.DataFrame(agreement).to_markdown(index=False, floatfmt=".3g"))
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(curves).to_csv(out / "curves.csv", index=False)
            record = {"provenance": {**provenance(config=vars(args), seeds=[0], commit=commit), "command": command},
                      "curves_agreement": agreement}
            (out / "curves.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
            print(f"wrote {out}/curves.csv, curves.json", file=sys.stderr)
        return 0
    load_start = machine_load()
    print(f"start: {describe_load(load_start)}", file=sys.stderr)
    rows = [bench_encode(args.videos, args.repeats, args.warmup)]
    with tempfile.TemporaryDirectory() as tmp:
        rows += [bench_train(r, args.batch, args.repeats, args.warmup, args.device, Path(tmp)) for r in args.ranks]
        curves, agreement = bench_curves(Path(tmp)) if args.curves else ([], [])
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4g"))
    if agreement:
        print(pd.DataFrame(agreement).to_markdown(index=False, floatfmt=".3g"))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "distributed_bench.csv", index=False)
        record = {"provenance": {**provenance(config=vars(args), seeds=[0], commit=commit), "command": command},
                  "machine_load": {"start": load_start, "end": machine_load()}, "rows": table.to_dict("records"),
                  "curves_agreement": agreement}
        if curves:
            pd.DataFrame(curves).to_csv(out / "curves.csv", index=False)
        (out / "distributed_bench.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"wrote {out}/distributed_bench.csv, distributed_bench.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
