"""`m4v-bench bench-eval`: all 16 VBench dimensions at VBench's resolution with full-size backbones (random
weights: the timing is the same), run two ways on the same mp4 files in one process:

  vbench  as VBench runs them: one dimension at a time, each decoding every video again and running its
          backbones one video at a time (DINO one frame at a time, appearance_style one frame at a time, RAFT
          again for the static filter and dynamic_degree), nothing shared;
  shared  as `m4v-bench eval` runs them: each video decoded once, each backbone's features computed once per
          frame and shared by every dimension (the backbones' per-frame memo and the flow pair memo), frames
          batched across videos.

Frames per second are video frames scored on all 16 dimensions per second. Per core: per CPU-second of the
process (time.process_time, all its threads), robust to a machine shared with other work; per GPU: per wall
second on cuda. The speed-up is the ratio of CPU seconds (of wall seconds on cuda).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from evaluators import Video, read_video, write_video
from evaluators.backbones import BackboneSpec, ClipBackbone, DinoBackbone, prefetch_features
from evaluators.registry import EVALUATORS, Declined, build_evaluator
from evaluators.vbench.scoring import NORMALIZATION

TARGET_SPEEDUP = 5.0
DIMENSIONS = list(NORMALIZATION)   # VBench's 16
# auxiliary_info for the prompt-suite dimensions (VBench_full_info.json layout); the content does not change timing
AUX = {"object_class": {"object": "square"}, "multiple_objects": {"object": "square and circle"},
       "color": {"color": "red", "object": "square"}, "scene": {"scene": {"scene": "grey"}},
       "appearance_style": {"appearance_style": "flat style"},
       "spatial_relationship": {"spatial_relationship": {"object_a": "red square", "object_b": "blue circle",
                                                         "relationship": "on the left of"}}}
PROMPT = "A person is running"   # human_action reads its label from the file name


@dataclass
class BenchConfig:
    """What bench-eval runs: synthetic videos at VBench's resolution, full-size backbones unless `small`."""

    n_videos: int = 2
    n_frames: int = 16
    height: int = 320
    width: int = 512
    threads: int = 1
    device: str = "cpu"
    small: bool = False    # tiny backbones and DIS flow: for tests only


def synthetic_videos(cfg: BenchConfig, seed: int = 0) -> list[np.ndarray]:
    """Blurred-noise textures drifting a little per frame (static enough for the static filter to keep some)."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(cfg.n_videos):
        base = cv2.GaussianBlur(rng.integers(0, 256, (cfg.height, cfg.width, 3)).astype(np.uint8), (5, 5), 1.5)
        step = i % 2   # half the videos still, half drifting 1 px per frame
        videos.append(np.stack([np.roll(base, step * t, axis=1) for t in range(cfg.n_frames)]))
    return videos


def write_videos(videos, directory: Path) -> list[Path]:
    """The videos as VBench reads them: mp4 files named <prompt>-<i>.mp4."""
    return [write_video(directory / f"{PROMPT}-{i}.mp4", frames, fps=8) for i, frames in enumerate(videos)]


class _AestheticStandIn:
    """A random-weight aesthetic head (LAION's is Linear(768, 1)) under the aesthetic kind."""

    def __init__(self, width: int):
        self.spec = BackboneSpec("aesthetic", "linear", None)
        self.head = torch.nn.Linear(width, 1).eval()


def build_backbones(cfg: BenchConfig) -> dict:
    """{role: backbone}: VBench's architectures at full size, random weights (small=True: tiny ones)."""
    from evaluators.vbench.flow import RaftFlow
    from evaluators.vbench.human_action import UMT_CONFIGS, UMTBackbone, UMTConfig, UMTVideoClassifier
    from evaluators.vbench.imaging_quality import FidelityBackbone
    from m4v.recipes import WEIGHTS_DIR

    torch.manual_seed(0)
    if cfg.small:
        clip_b = clip_l = ClipBackbone(BackboneSpec("clip", "m4v-tiny-clip", None), cfg.device)
        dino = DinoBackbone(BackboneSpec("dino", "vit_tiny_patch16_224", None), cfg.device)
        umt_cfg, raft = UMTConfig(img_size=32, embed_dim=32, depth=1, num_heads=2), None
    else:
        clip_b = ClipBackbone(BackboneSpec("clip", "ViT-B-32-quickgelu", None), cfg.device)
        clip_l = ClipBackbone(BackboneSpec("clip", "ViT-L-14-quickgelu", None), cfg.device)
        dino = DinoBackbone(BackboneSpec("dino", "dino_vitb16", None), cfg.device)
        umt_cfg, raft = UMT_CONFIGS["vit_large_patch16_224"], RaftFlow(BackboneSpec("raft", "raft_large", None),
                                                                        cfg.device)
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
            "fidelity": fidelity,
            "aesthetic": _AestheticStandIn(clip_l.model.visual.output_dim)}


def build_dimension_evaluators(backbones: dict) -> dict:
    """The 16 VBench evaluators; aesthetic_quality on the large CLIP, the others on the base one (as VBench)."""
    return {dim: build_evaluator(dim, backbones) for dim in DIMENSIONS}


def set_sharing(backbones: dict, shared: bool) -> None:
    """Memos on (shared) or off, and VBench's batch sizes for the per-dimension loop (DINO: one frame)."""
    from evaluators.vbench.flow import _DIS
    from evaluators.world_oracle import READINGS

    for backbone in list(backbones.values()) + [_DIS, READINGS]:
        if hasattr(backbone, "memo_enabled"):
            backbone.memo_enabled = shared
            for store in ("memo", "store"):
                if hasattr(getattr(backbone, store, None), "clear"):
                    getattr(backbone, store).clear()
            if hasattr(backbone, "text_memo"):
                backbone.text_memo.clear()
    backbones["dino"].batch_size = 16 if shared else 1


def _video(path: Path) -> Video:
    aux = {"dimension": DIMENSIONS, "auxiliary_info": AUX}
    return read_video(path, prompt=PROMPT, aux=aux)


def _score(evaluator, video) -> None:
    try:
        evaluator.evaluate_video(video)
    except Declined:   # the static filter's drops are part of the work, not an error
        pass


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


def run_vbench_loop(evaluators: dict, paths: list[Path]) -> _Clock:
    """One dimension at a time, every video decoded again, nothing shared."""
    clock = _Clock()
    for dim, evaluator in evaluators.items():
        clock.stage(dim, lambda ev=evaluator: [_score(ev, _video(path)) for path in paths])
    return clock


def run_shared(evaluators: dict, backbones: dict, paths: list[Path]) -> _Clock:
    """Decode once, features once per frame batched across videos, then every dimension."""
    clock = _Clock()
    videos = clock.stage("decode", lambda: [_video(path) for path in paths])
    frames = [v.frames for v in videos]

    clock.stage("features", lambda: prefetch_features(backbones, frames))
    for dim, evaluator in evaluators.items():
        clock.stage(dim, lambda ev=evaluator: [_score(ev, video) for video in videos])
    return clock


def bench_eval(cfg: BenchConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: one row per mode with frames/s per core and the speed-up, per-stage seconds of both modes)."""
    previous = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(cfg.threads)
    cv2.setNumThreads(cfg.threads)
    try:
        backbones = build_backbones(cfg)
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_videos(synthetic_videos(cfg), Path(tmp))
            set_sharing(backbones, shared=False)
            vbench = run_vbench_loop(build_dimension_evaluators(backbones), paths)
            set_sharing(backbones, shared=True)
            evaluators = build_dimension_evaluators(backbones)
            shared = run_shared(evaluators, backbones, paths)
    finally:
        torch.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])
    frames = cfg.n_videos * cfg.n_frames
    rows = []
    for mode, clock in (("vbench per-dimension loop", vbench), ("shared (m4v-bench eval)", shared)):
        wall, cpu = sum(clock.wall.values()), sum(clock.cpu.values())
        row = {"mode": mode, "videos": cfg.n_videos, "frames": frames, "size": f"{cfg.width}x{cfg.height}",
               "dimensions": len(DIMENSIONS), "threads": cfg.threads, "device": cfg.device, "wall_s": wall,
               "cpu_s": cpu, "frames_per_s_per_core": frames / cpu}
        if cfg.device == "cuda":
            row["frames_per_s_per_gpu"] = frames / wall
        rows.append(row)
    summary = pd.DataFrame(rows)
    basis = "wall_s" if cfg.device == "cuda" else "cpu_s"
    summary["speedup"] = summary[basis].iloc[0] / summary[basis]
    stages = pd.DataFrame({"vbench_cpu_s": pd.Series(vbench.cpu), "shared_cpu_s": pd.Series(shared.cpu),
                           "vbench_wall_s": pd.Series(vbench.wall), "shared_wall_s": pd.Series(shared.wall)})
    stages = stages.fillna(0.0)
    stages["backbone"] = pd.Series({dim: evaluator.backbone for dim, evaluator in evaluators.items()})
    return summary, stages.fillna("")


def backbone_table() -> pd.DataFrame:
    """Per dimension: what makes it VBench-faithful (the class metadata), for --help and the docs."""
    return pd.DataFrame([{"dimension": d, "faithful_backbone": EVALUATORS[d].faithful_backbone}
                         for d in DIMENSIONS])
