"""`m4v-bench bench-eval`: VBench's 16 dimensions on VBench's protocol, timed three ways on the same mp4 files.

The videos: one synthetic prompt entry per VBench prompt list (the 11 dimension-tag sets of VBench_full_info.json),
`videos` files `<prompt>-<i>.mp4` per prompt, every frame distinct (checked: no frame repeats within or across
videos, so no content-keyed memo hits on a repeated frame). Each dimension scores only the videos of the prompts
tagged with it, as VBench's `load_dimension_info` does; temporal_flickering's static filter runs on its own
prompts' videos, with the quota of 5 checked by the evaluator.

  vbench       VBench's loop: dimension by dimension, each video decoded again, backbones one video at a time
               (DINO one frame at a time), every flow pair computed before deciding, nothing memoised.
  shared       `m4v-bench eval`'s path: each video decoded once and scored on its dimensions, per-frame feature
               and flow memos, the static filter / dynamic_degree stopping once their decision is fixed, RAFT's
               encoder outputs reused across a frame's two pairs. Exact: same decisions, same flows.
  shared-bf16  the same under `--precision bf16` (evaluators/precision.py): autocast bf16 on CPU, fp16 on CUDA.

Every mode is warmed up once (untimed, on one video per prompt list) and then timed `repeats` times, modes
interleaved in a rotating order. Speed-up: VBench's CPU seconds over the mode's, per repeat (wall seconds on cuda);
the table gives the median and min-max. The fidelity part compares each mode's per-video results with the
vbench loop's: largest per-video difference per dimension, flipped binary decisions (static filter keep/drop,
dynamic_degree 0/1, human_action's label among the top-5 >= 0.85), change of each aggregate and of VBench's Total,
and the nearest any flow or UMT statistic came to its threshold against how far the mode moved it.

Backbones are VBench's architectures at full size with random weights (no weights offline). A random-weight RAFT
reads about 12 px of flow on any pair, identical frames included, which would make every video "moving" and let
the early stops skip most pairs; its flow head is scaled by QUIET_FLOW so that every pair reads well under the
thresholds: every video is static and none dynamic, the case where the early stops save least short of
adversarial score orders. Its timing does not depend on the weights' values.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from evaluators import Video, read_video, write_video
from evaluators.backbones import BackboneSpec, ClipBackbone, DinoBackbone, frame_key
from evaluators.precision import backbone_precision, describe
from evaluators.registry import EVALUATORS, Declined, build_evaluator
from evaluators.vbench import dynamic_degree as dynamic_module
from evaluators.vbench import static_filter as static_module
from evaluators.vbench.flow import top_fraction_mean
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores_missing_zero

DIMENSIONS = list(NORMALIZATION)   # VBench's 16
# VBench_full_info.json's 11 prompt lists: (list name, the dimension tags its prompts carry, auxiliary_info).
# The auxiliary content is synthetic (the substitutes' cost does not depend on it); tests check the tags.
PROMPT_LISTS = [
    ("subject_consistency", ["subject_consistency", "dynamic_degree", "motion_smoothness"], {}),
    ("scene", ["background_consistency", "scene"], {"scene": {"scene": {"scene": "grey"}}}),
    ("temporal_flickering", ["temporal_flickering"], {}),
    ("overall_consistency", ["aesthetic_quality", "imaging_quality", "overall_consistency"], {}),
    ("object_class", ["object_class"], {"object_class": {"object": "square"}}),
    ("multiple_objects", ["multiple_objects"], {"multiple_objects": {"object": "square and circle"}}),
    ("human_action", ["human_action"], {}),
    ("color", ["color"], {"color": {"color": "red", "object": "square"}}),
    ("spatial_relationship", ["spatial_relationship"],
     {"spatial_relationship": {"spatial_relationship": {"object_a": "red square", "object_b": "blue circle",
                                                        "relationship": "on the left of"}}}),
    ("temporal_style", ["temporal_style"], {}),
    ("appearance_style", ["appearance_style"], {"appearance_style": {"appearance_style": "flat style"}}),
]
ACTIONS = ["running", "swimming", "cooking", "dancing", "juggling", "skiing", "reading", "knitting"]
QUIET_FLOW = 1e-2   # scale of random RAFT's flow head: pair scores far below VBench's thresholds (see above)
BF16_GOAL = 2.0     # issue 29: the bf16 path at >= 2x VBench's fp32 loop with no flipped decision
MODES = ("vbench", "shared", "shared-bf16")
MODE_LABELS = {"vbench": "vbench per-dimension loop", "shared": "shared (m4v-bench eval)",
               "shared-bf16": "shared (m4v-bench eval)"}


@dataclass
class BenchConfig:
    """What bench-eval runs: synthetic videos at VBench's resolution, full-size backbones unless `small`."""

    videos: int = 2          # per prompt (VBench samples 5)
    n_frames: int = 16
    height: int = 320
    width: int = 512
    threads: int = 1
    device: str = "cpu"
    small: bool = False      # tiny backbones and DIS flow: for tests only
    prompts: int = 1         # per VBench prompt list
    repeats: int = 3
    warmup: bool = True
    precision: str = "fp32"  # bf16: also time the shared path under backbone_precision and check its fidelity
    seed: int = 0


# ---- the videos --------------------------------------------------------------------------------------------------
def prompt_entries(cfg: BenchConfig) -> list[dict]:
    """`prompts` entries per VBench prompt list, in VBench's full_info layout (prompts unique across lists)."""
    entries = []
    for name, tags, aux in PROMPT_LISTS:
        for k in range(cfg.prompts):
            prompt = (f"A person is {ACTIONS[k % len(ACTIONS)]}" + (f" {k}" if k >= len(ACTIONS) else "")
                      if name == "human_action" else f"a {name.replace('_', ' ')} scene {k}")
            entries.append({"prompt_en": prompt, "dimension": list(tags), "auxiliary_info": aux})
    return entries


def synthetic_video(cfg: BenchConfig, rng: np.random.Generator, step: int) -> np.ndarray:
    """A blurred-noise texture drifting `step` px per frame: every frame distinct, no two videos alike."""
    base = rng.integers(0, 256, (cfg.height, cfg.width + step * cfg.n_frames, 3)).astype(np.uint8)
    base = cv2.GaussianBlur(base, (5, 5), 1.5)
    return np.stack([base[:, step * t:step * t + cfg.width] for t in range(cfg.n_frames)])


def write_videos(cfg: BenchConfig, entries: list[dict], directory: Path) -> list[tuple[Path, dict]]:
    """(file, prompt entry) per video, named as VBench's standard mode reads them: <prompt>-<i>.mp4."""
    rng = np.random.default_rng(cfg.seed)
    files = []
    for entry in entries:
        for i in range(cfg.videos):
            frames = synthetic_video(cfg, rng, step=1 + 2 * (i % 2))   # 1 or 3 px per frame
            files.append((write_video(directory / f"{entry['prompt_en']}-{i}.mp4", frames, fps=8), entry))
    return sorted(files, key=lambda item: item[0].name)   # VBench visits files in sorted order


def distinct_frames(videos: list[np.ndarray]) -> tuple[int, int]:
    """(distinct frames, frames) over all videos, by content."""
    keys = [frame_key(frame) for frames in videos for frame in frames]
    return len(set(keys)), len(keys)


def _video(path: Path, entry: dict) -> Video:
    return read_video(path, prompt=entry["prompt_en"], aux=entry)


# ---- backbones and the three modes --------------------------------------------------------------------------------
class _AestheticStandIn:
    """A random-weight aesthetic head (LAION's is Linear(768, 1)) under the aesthetic kind."""

    def __init__(self, width: int):
        self.spec = BackboneSpec("aesthetic", "linear", None)
        self.head = torch.nn.Linear(width, 1).eval()


def quiet_raft(raft) -> None:
    """Scale a random RAFT's flow head so pair scores sit far below the thresholds (module docstring)."""
    with torch.no_grad():
        head = raft.model.update_block.flow_head.conv2
        head.weight.mul_(QUIET_FLOW)
        head.bias.mul_(QUIET_FLOW)


def build_backbones(cfg: BenchConfig) -> dict:
    """{role: backbone}: VBench's architectures at full size, random weights (small=True: tiny ones)."""
    from evaluators.vbench.flow import RaftFlow
    from evaluators.vbench.human_action import UMT_CONFIGS, UMTBackbone, UMTConfig, UMTVideoClassifier
    from evaluators.vbench.imaging_quality import FidelityBackbone
    from m4v.recipes import WEIGHTS_DIR

    torch.manual_seed(cfg.seed)
    if cfg.small:
        clip_b = clip_l = ClipBackbone(BackboneSpec("clip", "m4v-tiny-clip", None), cfg.device)
        dino = DinoBackbone(BackboneSpec("dino", "vit_tiny_patch16_224", None), cfg.device)
        umt_cfg, raft = UMTConfig(img_size=32, embed_dim=32, depth=1, num_heads=2), None
    else:
        clip_b = ClipBackbone(BackboneSpec("clip", "ViT-B-32-quickgelu", None), cfg.device)
        clip_l = ClipBackbone(BackboneSpec("clip", "ViT-L-14-quickgelu", None), cfg.device)
        dino = DinoBackbone(BackboneSpec("dino", "dino_vitb16", None), cfg.device)
        umt_cfg = UMT_CONFIGS["vit_large_patch16_224"]
        raft = RaftFlow(BackboneSpec("raft", "raft_large", None), cfg.device)
        quiet_raft(raft)
    umt = UMTBackbone(BackboneSpec("umt", "vit_large_patch16_224", None), cfg.device,
                      model=UMTVideoClassifier(umt_cfg).to(cfg.device).eval(),
                      labels={i: f"label {i}" for i in range(umt_cfg.num_classes)})
    amt = None
    if not cfg.small:
        from evaluators.vbench.motion_smoothness import AmtInterpolator

        try:
            amt = AmtInterpolator(BackboneSpec("amt", "AMT-S", None), cfg.device)
        except ValueError:   # VBench's package (AMT's code) does not import here: DIS interpolation stands in
            amt = None
    # MUSIQ is not available offline: imaging_quality runs its substitute, the shipped world-trained model
    fidelity = FidelityBackbone(BackboneSpec("fidelity", "fidelity-tiny",
                                             str(WEIGHTS_DIR / "reward-tiny" / "model.safetensors")), cfg.device)
    return {"clip": clip_b, "aesthetic_clip": clip_l, "dino": dino, "raft": raft, "amt": amt, "umt": umt,
            "fidelity": fidelity, "aesthetic": _AestheticStandIn(clip_l.model.visual.output_dim)}


def build_dimension_evaluators(backbones: dict) -> dict:
    """The 16 VBench evaluators; aesthetic_quality on the large CLIP, the others on the base one (as VBench)."""
    return {dim: build_evaluator(dim, backbones) for dim in DIMENSIONS}


def _memo_holders(backbones: dict) -> list:
    from evaluators.vbench.flow import _DIS
    from evaluators.world_oracle import READINGS

    return [b for b in list(backbones.values()) + [_DIS, READINGS] if hasattr(b, "memo_enabled")]


def configure(backbones: dict, shared: bool) -> None:
    """Memos on and early stops on (shared), or VBench's way: nothing memoised, every flow pair computed, DINO
    one frame at a time. Every memo is emptied either way, so no run reads another's features."""
    for holder in _memo_holders(backbones):
        holder.memo_enabled = shared
        if hasattr(holder, "clear"):
            holder.clear()
        for store in ("memo", "store", "text_memo"):
            if hasattr(getattr(holder, store, None), "clear"):
                getattr(holder, store).clear()
    backbones["dino"].batch_size = 16 if shared else 1
    static_module.EARLY_STOP = dynamic_module.EARLY_STOP = shared


@contextlib.contextmanager
def _restored_settings(backbones: dict):
    """Give back the thread counts, the early-stop switches and the memo switches as they were."""
    threads = torch.get_num_threads(), cv2.getNumThreads()
    early = static_module.EARLY_STOP, dynamic_module.EARLY_STOP
    memos = [(holder, holder.memo_enabled) for holder in _memo_holders(backbones)]
    try:
        yield
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
        static_module.EARLY_STOP, dynamic_module.EARLY_STOP = early
        for holder, enabled in memos:
            holder.memo_enabled = enabled


class _Clock:
    """(wall, cpu) seconds of each named stage."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    def stage(self, name: str, work) -> object:
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        return result


class _Statistics:
    """What the binary decisions are made of, recorded per (dimension, input): each flow pair's top-2 % and top-5 %
    means, UMT's top-5 probabilities. Wraps the flow source's `magnitude` and UMT's `probabilities`."""

    def __init__(self):
        self.dimension, self.flow, self.umt = "", {}, {}

    @contextlib.contextmanager
    def recording(self, flow_sources: list, umt):
        def flow_wrapper(source):
            inner = source.magnitude

            def magnitude(frame1, frame2):
                value = inner(frame1, frame2)
                key = (self.dimension, frame_key(frame1), frame_key(frame2))
                self.flow[key] = (top_fraction_mean(value, static_module.TOP_FRACTION),
                                  top_fraction_mean(value, dynamic_module.TOP_FRACTION))
                return value
            return magnitude

        def umt_wrapper(inner):
            def probabilities(frames):
                value = inner(frames)
                self.umt[(frame_key(frames[0]), len(frames))] = torch.topk(value.float(), 5).values.tolist()
                return value
            return probabilities

        sources = list({id(s): s for s in flow_sources}.values())
        for source in sources:
            source.magnitude = flow_wrapper(source)
        umt.probabilities = umt_wrapper(umt.probabilities)
        try:
            yield self
        finally:   # the instance attributes shadowed the methods; removing them restores the methods
            for source in sources:
                del source.magnitude
            del umt.probabilities


@dataclass
class ModeRun:
    """One timed run of one mode: stage clocks, per-video results, aggregates, flow counters, statistics."""

    clock: _Clock
    results: dict                       # (dimension, video name) -> {"status", "score", "extra"}
    aggregates: dict                    # dimension -> aggregate
    counters: dict
    statistics: _Statistics = field(repr=False, default=None)
    wall: float = 0.0                   # seconds of the whole run (set by bench_eval)
    cpu: float = 0.0
    load_1m: float = math.nan           # the machine's 1-minute load average as the run began


def _score(evaluator, video, results: dict, dim: str) -> None:
    """Score one video on one dimension into `results`; the static filter's drops are part of the work."""
    try:
        record = evaluator.evaluate_video(video)
        row = {"status": "ok", "score": float(record.score), "extra": record.extra, "record": record}
    except Declined as exc:
        row = {"status": "declined", "score": None, "extra": getattr(exc, "extra", {}), "reason": str(exc)}
    if hasattr(evaluator, "observe"):   # evaluators whose decision depends on earlier videos (the quota)
        evaluator.observe(video, {"status": row["status"], "extra": row["extra"]})
    results[(dim, Path(video.source).name)] = row


def run_mode(mode: str, backbones: dict, files: list[tuple[Path, dict]], cfg: BenchConfig) -> ModeRun:
    """Score every file on its dimensions the way `mode` does (module docstring)."""
    shared = mode != "vbench"
    configure(backbones, shared)
    evaluators = build_dimension_evaluators(backbones)
    stats, clock, results = _Statistics(), _Clock(), {}
    flow_sources = [ev.flow for ev in evaluators.values() if hasattr(ev, "flow")]
    precision = "bf16" if mode == "shared-bf16" else "fp32"
    with stats.recording(flow_sources, backbones["umt"]), backbone_precision(precision, cfg.device):
        if shared:   # m4v-bench eval: each video decoded once, then its dimensions (Evaluator.applies)
            for path, entry in files:
                video = clock.stage("decode", lambda p=path, e=entry: _video(p, e))
                for dim, evaluator in evaluators.items():
                    if evaluator.applies(video):
                        stats.dimension = dim
                        clock.stage(dim, lambda ev=evaluator, d=dim, v=video: _score(ev, v, results, d))
        else:        # VBench: per dimension, the videos of the prompts tagged with it, each decoded again
            for dim, evaluator in evaluators.items():
                stats.dimension = dim
                for path, entry in files:
                    if dim in entry["dimension"]:
                        clock.stage(dim, lambda ev=evaluator, d=dim, p=path, e=entry:
                                    _score(ev, _video(p, e), results, d))
    aggregates = {}
    for dim, evaluator in evaluators.items():
        records = [row["record"] for (d, _), row in results.items() if d == dim and row["status"] == "ok"]
        aggregates[dim] = evaluator.aggregate(records) if records else float("nan")
    counters = {"flow_pairs": sum(s.pairs_computed for s in {id(s): s for s in flow_sources}.values()),
                "raft_encoder_frames": getattr(backbones["raft"], "features_computed", 0)}
    return ModeRun(clock, results, aggregates, counters, stats)


# ---- fidelity --------------------------------------------------------------------------------------------------
def decisions(results: dict) -> dict:
    """{(decision, video): value} of the binary decisions VBench makes per video."""
    out = {}
    for (dim, video), row in results.items():
        if dim == "temporal_flickering":
            out[("static filter keeps", video)] = row["status"] == "ok"
        elif dim == "dynamic_degree" and row["status"] == "ok":
            out[("dynamic_degree", video)] = row["score"]
        elif dim == "human_action" and row["status"] == "ok":
            out[("human_action label in top-5 >= 0.85", video)] = row["score"]
            out[("human_action labels >= 0.85", video)] = tuple(sorted(row["extra"].get("confident_top5", [])))
    return out


def count_flips(reference: dict, candidate: dict) -> dict:
    """{decision: videos whose decision differs between two runs' results} (a video missing in one counts)."""
    ref, cand = decisions(reference), decisions(candidate)
    flips = {}
    for name, video in sorted(set(ref) | set(cand)):
        flips.setdefault(name, [])
        if ref.get((name, video)) != cand.get((name, video)):
            flips[name].append(video)
    return flips


def per_video_differences(reference: dict, candidate: dict) -> dict:
    """{dimension: largest |score difference| over the videos both scored}."""
    out = {}
    for (dim, video), row in reference.items():
        other = candidate.get((dim, video))
        if row["status"] == "ok" and other is not None and other["status"] == "ok":
            out[dim] = max(out.get(dim, 0.0), abs(row["score"] - other["score"]))
    return out


def total(aggregates: dict) -> float:
    """VBench's Total (scripts/cal_final_score.py: a dimension with nothing scored counts as 0)."""
    return vbench_scores_missing_zero(aggregates)["total"]


def fidelity_table(runs: dict) -> pd.DataFrame:
    """Per dimension (and Total): aggregates of every mode, each mode's change against the vbench loop, the largest
    per-video difference, flipped decisions."""
    reference = runs["vbench"]
    rows = []
    for dim in DIMENSIONS + ["total"]:
        row = {"dimension": dim}
        for mode, run in runs.items():
            row[f"{mode}"] = total(run.aggregates) if dim == "total" else run.aggregates[dim]
        for mode, run in runs.items():
            if mode == "vbench":
                continue
            row[f"{mode}_minus_vbench"] = row[mode] - row["vbench"]
            if dim != "total":
                row[f"{mode}_max_per_video_abs_diff"] = per_video_differences(reference.results, run.results).get(
                    dim, float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def flips_table(runs: dict) -> pd.DataFrame:
    """Per binary decision: videos decided, and per mode the videos whose decision differs from the vbench loop."""
    reference = runs["vbench"]
    ref = decisions(reference.results)
    rows = []
    for name in sorted({n for n, _ in ref}):
        row = {"decision": name, "videos": sum(1 for n, _ in ref if n == name),
               "vbench_true_or_nonempty": sum(1 for (n, _), v in ref.items() if n == name and bool(v))}
        for mode, run in runs.items():
            if mode != "vbench":
                row[f"{mode}_flipped"] = len(count_flips(reference.results, run.results).get(name, []))
        rows.append(row)
    return pd.DataFrame(rows)


def margins_table(runs: dict, height: int, width: int, n_frames: int) -> pd.DataFrame:
    """Per thresholded statistic: the vbench loop's nearest value to its threshold(s), and how far each mode moved
    the statistic at most (a flip needs a move at least as large as the margin)."""
    static = static_module.static_params(height, width, n_frames)
    reference = runs["vbench"].statistics
    specs = [("static filter: pair top-2 % flow (px)", "temporal_flickering", 0,
              [static["thres"], static["thres"] * static["count_num"] * 2]),
             ("dynamic_degree: pair top-5 % flow (px)", "dynamic_degree", 1, None),
             ("human_action: top-5 probability", None, None, [0.85])]
    rows = []
    for name, dim, index, thresholds in specs:
        if dim is None:
            values = {k: np.array(v) for k, v in reference.umt.items()}
        else:
            values = {k[1:]: np.array([v[index]]) for k, v in reference.flow.items() if k[0] == dim}
        if thresholds is None:   # dynamic_degree's threshold follows the sampled frames' size
            thresholds = [dynamic_module.dynamic_params(height, width, n_frames)["thres"]]
        flat = np.concatenate(list(values.values())) if values else np.array([])
        row = {"statistic": name, "thresholds": " / ".join(f"{t:.4g}" for t in thresholds), "values": flat.size,
               "vbench_min": float(flat.min()) if flat.size else float("nan"),
               "vbench_max": float(flat.max()) if flat.size else float("nan"),
               "vbench_nearest_margin": float(min(np.abs(flat - t).min() for t in thresholds)) if flat.size
               else float("nan")}
        for mode, run in runs.items():
            if mode == "vbench":
                continue
            if dim is None:
                other = {k: np.array(v) for k, v in run.statistics.umt.items()}
            else:
                other = {k[1:]: np.array([v[index]]) for k, v in run.statistics.flow.items() if k[0] == dim}
            moved = [float(np.abs(values[k] - other[k]).max()) for k in values if k in other]
            row[f"{mode}_max_change"] = max(moved) if moved else float("nan")
            row[f"{mode}_compared"] = len(moved)
        rows.append(row)
    return pd.DataFrame(rows)


# ---- the benchmark ---------------------------------------------------------------------------------------------
def _same_scores(a: dict, b: dict) -> bool:
    """Whether two runs scored the same videos with the same numbers (NaN equal to NaN)."""
    def same(x, y):
        return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
    return a.keys() == b.keys() and all(same(a[k]["score"], b[k]["score"]) for k in a)


def _timing_columns(values: list[float], prefix: str) -> dict:
    from benchmarks.compute.measure import median_interval

    median, _, _ = median_interval(values)
    return {prefix: median, f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


def bench_eval(cfg: BenchConfig, log=print) -> dict:
    """Run the benchmark -> {"summary", "stages", "fidelity", "flips", "margins": DataFrames, "checks": dict}."""
    from benchmarks.compute.measure import machine_load

    modes = ["vbench", "shared"] + (["shared-bf16"] if cfg.precision == "bf16" else [])
    if cfg.precision == "bf16":
        describe("bf16", cfg.device)   # refuses a CPU without native bf16 before any work
    backbones = build_backbones(cfg)
    entries = prompt_entries(cfg)
    load_start = machine_load()
    started = time.perf_counter()
    with _restored_settings(backbones), tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(cfg.threads)
        cv2.setNumThreads(cfg.threads)
        files = write_videos(cfg, entries, Path(tmp))
        decoded = [_video(path, entry).frames for path, entry in files]
        distinct, n_frames = distinct_frames(decoded)
        if distinct != n_frames:
            raise RuntimeError(f"bench-eval: {n_frames - distinct} of {n_frames} frames repeat; every frame must be "
                               "distinct (a repeated frame is a memo hit the benchmark would time as a speed-up)")
        del decoded
        if cfg.warmup:   # untimed: first calls build kernels and caches; one video per prompt list
            warm = [next(f for f in files if f[1] is entry) for entry in entries[::cfg.prompts]]
            for mode in modes:
                log(f"bench-eval: warm-up {mode}")
                run_mode(mode, backbones, warm, cfg)
        timed = {mode: [] for mode in modes}
        for repeat in range(cfg.repeats):
            order = modes[repeat % len(modes):] + modes[:repeat % len(modes)]   # drift spreads over the modes
            for mode in order:
                load = machine_load()["load_avg_1m"]
                wall, cpu = time.perf_counter(), time.process_time()
                run = run_mode(mode, backbones, files, cfg)
                run.wall, run.cpu, run.load_1m = time.perf_counter() - wall, time.process_time() - cpu, load
                timed[mode].append(run)
                log(f"bench-eval: repeat {repeat + 1}/{cfg.repeats} {mode}: {run.cpu:.1f} CPU s, {run.wall:.1f} s "
                    f"(load {load:.2f})")
    elapsed = time.perf_counter() - started
    last = {mode: runs[-1] for mode, runs in timed.items()}
    basis = "wall" if cfg.device == "cuda" else "cpu"
    rows = []
    for mode in modes:
        runs = timed[mode]
        ratios = [getattr(v, basis) / getattr(r, basis) for v, r in zip(timed["vbench"], runs)]
        cpu = _timing_columns([r.cpu for r in runs], "cpu_s")
        precision = describe("bf16" if mode == "shared-bf16" else "fp32", cfg.device)
        row = {"mode_id": mode, "mode": MODE_LABELS[mode], "precision": precision,
               "videos": len(files), "frames": n_frames, "distinct_frames": distinct,
               "size": f"{cfg.width}x{cfg.height}", "threads": cfg.threads, "device": cfg.device,
               "repeats": len(runs), **cpu, **_timing_columns([r.wall for r in runs], "wall_s"),
               "frames_per_s_per_core": n_frames / cpu["cpu_s"],
               "load_avg_1m_at_starts": " ".join(f"{r.load_1m:.2f}" for r in runs),
               **_timing_columns(ratios, "speedup"), **last[mode].counters}
        if cfg.device == "cuda":
            row["frames_per_s_per_gpu"] = n_frames / row["wall_s"]
        rows.append(row)
    stages = pd.DataFrame({f"{mode}_cpu_s": pd.Series({name: float(np.median([r.clock.cpu.get(name, 0.0)
                                                                               for r in timed[mode]]))
                                                       for name in timed[mode][0].clock.cpu})
                           for mode in modes}).fillna(0.0)
    consistent = {mode: all(_same_scores(r.results, runs[0].results) for r in runs) for mode, runs in timed.items()}
    return {"summary": pd.DataFrame(rows), "stages": stages, "fidelity": fidelity_table(last),
            "flips": flips_table(last), "margins": margins_table(last, cfg.height, cfg.width, cfg.n_frames),
            "checks": {"frames": n_frames, "distinct_frames": distinct, "videos": len(files),
                       "prompt_lists": len(PROMPT_LISTS), "repeats_identical_scores": consistent,
                       "elapsed_s": elapsed, "load_start": load_start, "load_end": machine_load(),
                       "aesthetic_and_flow_substitutes": {
                           "motion_smoothness": "AMT-S" if backbones["amt"] is not None else "DIS interpolation",
                           "imaging_quality": "fidelity-tiny (MUSIQ not available offline)",
                           "flow": backbones["raft"].label if backbones["raft"] is not None else "opencv-dis"}}}


def backbone_table() -> pd.DataFrame:
    """Per dimension: what makes it VBench-faithful (the class metadata), for --help and the docs."""
    return pd.DataFrame([{"dimension": d, "faithful_backbone": EVALUATORS[d].faithful_backbone}
                         for d in DIMENSIONS])


# ---- output -----------------------------------------------------------------------------------------------------
TABLES = ("summary", "stages", "fidelity", "flips", "margins")


def goal_lines(result: dict) -> list[str]:
    """The measured ratios in words, and whether the bf16 path meets BF16_GOAL with no flipped decision."""
    summary, flips = result["summary"], result["flips"]
    lines = []
    for _, row in summary.iloc[1:].iterrows():
        mode = row["mode_id"]
        flipped = int(flips[f"{mode}_flipped"].sum()) if f"{mode}_flipped" in flips else 0
        line = (f"{row['mode']}, {row['precision']}: {row['speedup']:.2f}x VBench's fp32 loop (min-max "
                f"{row['speedup_min']:.2f}-{row['speedup_max']:.2f} over {row['repeats']} repeats), {flipped} "
                "flipped decisions")
        if mode == "shared-bf16":
            met = row["speedup"] >= BF16_GOAL and flipped == 0
            line += f"; goal >= {BF16_GOAL:g}x with 0 flips: {'met' if met else 'not met'}"
        lines.append(line + "  ")
    return lines


def report_markdown(result: dict, prov: dict) -> str:
    """The tables as markdown with the provenance that makes them readable."""
    checks = result["checks"]
    load = lambda d: f"{d['load_avg_1m']:.2f} / {d['load_avg_5m']:.2f} / {d['load_avg_15m']:.2f}"  # noqa: E731
    lines = ["# bench-eval: VBench's 16 dimensions on VBench's protocol", "",
             f"Command: `{prov['command']}`  ", f"Commit: {prov['git_commit']}  ",
             f"Created: {prov['created_utc']}  ",
             f"Machine: {checks['load_start']['cpu_model']} ({checks['load_start']['cpu_kernels']}), "
             f"{checks['load_start']['cpus_available']} CPUs available, {result['summary']['threads'].iloc[0]} "
             f"thread(s); load average (1/5/15 min) {load(checks['load_start'])} at the start, "
             f"{load(checks['load_end'])} at the end  ",
             f"Versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}  ",
             f"Wall time of the whole run (warm-up included): {checks['elapsed_s']:.0f} s  ",
             f"Videos: {checks['videos']} ({checks['prompt_lists']} VBench prompt lists), {checks['frames']} frames, "
             f"{checks['distinct_frames']} distinct; substitutes: {checks['aesthetic_and_flow_substitutes']}  ",
             f"Scores identical across repeats: {checks['repeats_identical_scores']}", "", *goal_lines(result), ""]
    titles = {"summary": "Time per mode (CPU seconds of the process; speed-up = VBench loop / mode, per repeat)",
              "stages": "CPU seconds per stage (median over repeats; the VBench loop decodes inside each dimension)",
              "fidelity": "Aggregates and changes against the VBench loop (per dimension and Total)",
              "flips": "Binary decisions flipped against the VBench loop",
              "margins": "Nearest approach to a threshold (VBench loop) and largest change by each mode"}
    for name in TABLES:
        lines += [f"## {titles[name]}", "", result[name].to_markdown(index=name == "stages", floatfmt=".4g"), ""]
    return "\n".join(lines)


def write_outputs(result: dict, out_dir, prov: dict) -> list[Path]:
    """bench_eval_<table>.csv, bench_eval.md and bench_eval.json (every table and the provenance) under out_dir."""
    from benchmarks.core.outputs import atomic_write_csv, atomic_write_json, atomic_write_text, prepare_output_dir

    out = prepare_output_dir(out_dir)
    written = []
    for name in TABLES:
        table = result[name].reset_index(names="stage") if name == "stages" else result[name]
        written.append(atomic_write_csv(out / f"bench_eval_{name}.csv", table))
    written.append(atomic_write_text(out / "bench_eval.md", report_markdown(result, prov)))
    payload = {"provenance": prov, "checks": result["checks"],
               **{name: (result[name].reset_index(names="stage") if name == "stages" else result[name])
                  .to_dict(orient="records") for name in TABLES}}
    written.append(atomic_write_json(out / "bench_eval.json", payload))
    return written


def run_provenance(cfg: BenchConfig, commit: str) -> dict:
    """provenance() with the command line and the configuration."""
    from benchmarks.core.provenance import provenance

    command = "m4v-bench " + " ".join(sys.argv[1:]) if sys.argv and "m4v-bench" in sys.argv[0] else " ".join(
        sys.argv)
    return {**provenance(config=asdict(cfg), seeds=[cfg.seed], commit=commit), "command": command,
            "pid": os.getpid(), "quiet_flow": None if cfg.small else QUIET_FLOW}
