"""`m4v-bench world-quality`: generate the world prompt suite with trained models and read every video with
the world's oracle: object (shape and colour) right per frame, motion direction, relation, background, style;
beside the generation's mixer FLOPs, counted by FlopCounterMode on the real calls.

The quality bar of the shipped tiny models (issue 5) is read from this table: colour and shape right in most
frames (chance is 1/28 for a colour-shape pair), motion right for most dynamic prompts, m4v-tiny within a few
points of dit-tiny at fewer mixer FLOPs. "Found" means among the frame's detections, so read it beside
count_frames (exactly the prompted number of objects): a model that paints clutter finds the prompted object
by luck. Colour+shape and motion carry 95% bootstrap intervals over prompts, and every model's colour+shape
is also compared with the first model's on the same prompts and seeds (paired difference and interval).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from benchmarks.provenance import git_commit, provenance
from benchmarks.table4 import mixer_module_names, sum_module_flops
from benchmarks.train import RECORD_FILE
from m4v.generate import TINY_GUIDANCE, TINY_STEPS, TextToVideo, latent_frames_for
from m4v.pyramid import VAE_TEMPORAL
from m4v.recipes import weights_path
from m4v.vae import CausalVideoVAE
from m4v.world import Scene, motion_of, read_frame, relation, render
from m4v.world.captions import prompt_suite
from m4v.world.dataset import to_model_video, to_uint8_frames

SUITE_SEED = 1  # the training data uses other seeds (m4v/recipes); this suite is held out
CI_LEVEL = 0.95


def bootstrap_ci(values, seed: int = 0, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over videos (the unit that was sampled); (nan, nan) for fewer
    than two. At 4 prompts per kind the colour+shape interval is about +-0.15 wide: differences between
    recipes smaller than that were sampling noise in our own pilots."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=level, n_resamples=2000, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def score_video(frames: np.ndarray, entry: dict) -> dict:
    """Oracle checks of one (T, H, W, 3) video against its prompt entry (world suite)."""
    kind = entry["world_kind"]
    scene = Scene.from_dict(entry["auxiliary_info"]["world"])
    readings = [read_frame(f) for f in frames]
    first = scene.objects[0]
    colour_named = kind != "object_class"

    def found(reading, obj, with_colour=True):
        return [d for d in reading.objects if d.shape == obj.shape and (not with_colour or d.color == obj.color)]

    row = {"object_frames": float(np.mean([bool(found(r, first, colour_named)) for r in readings])),
           "colour_frames": (float(np.mean([any(d.color == first.color for d in r.objects) for r in readings]))
                             if colour_named else np.nan),
           "shape_frames": float(np.mean([any(d.shape == first.shape for d in r.objects) for r in readings])),
           # "found" credits any match among the detections: this keeps clutter (extra objects) from passing
           "count_frames": float(np.mean([len(r.objects) == len(scene.objects) for r in readings]))}
    if len(scene.objects) > 1:
        second = scene.objects[1]
        both = [(found(r, first), found(r, second)) for r in readings]
        row["both_objects_frames"] = float(np.mean([bool(a and b) for a, b in both]))
        if scene.relation:
            row["relation_frames"] = float(np.mean([bool(a and b) and relation(a[0], b[0]) == scene.relation
                                                    for a, b in both]))
    if kind == "scene":
        row["background_frames"] = float(np.mean([r.background == scene.background for r in readings]))
    if kind == "style":
        row["style_frames"] = float(np.mean([r.style == scene.style for r in readings]))
    if kind in ("dynamic", "static"):
        # Tracked by colour alone (one object per motion prompt): direction is scored apart from shape reading.
        row["motion_right"] = float(motion_of(frames, first.color) == first.motion)
    return row


def generate_suite(pipe: TextToVideo, entries: list[dict], frames: int, seed: int, steps, guidance,
                   batch: int = 16) -> tuple[list[np.ndarray], dict]:
    """Videos for every entry (batched) and what they cost: FLOPs of the transformer calls, mixer FLOPs, seconds."""
    videos, flops, mixer, seconds = [], 0, 0, 0.0
    names = mixer_module_names(pipe.model.cfg)
    for start in range(0, len(entries), batch):
        prompts = [e["prompt_en"] for e in entries[start:start + batch]]
        t0 = time.perf_counter()
        with FlopCounterMode(display=False) as counter:
            out, _, _ = pipe(prompts, frames=frames, seed=seed + start, steps=steps, guidance=guidance)
        seconds += time.perf_counter() - t0
        by_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
        flops += by_module.get(type(pipe.model).__name__, 0)
        mixer += sum_module_flops(by_module, names)
        videos.extend(out)
    n = len(entries)
    return videos, {"gflops_per_video": flops / n / 1e9, "mixer_gflops_per_video": mixer / n / 1e9,
                    "seconds_per_video": seconds / n}


def vae_frames_for(frames: int) -> int:
    """The 1 + 8k pixel frames the VAE takes for a `frames`-frame video."""
    return 1 + VAE_TEMPORAL * (latent_frames_for(frames) - 1)


def true_latents(vae, entries: list[dict], n_frames: int = 1) -> tuple[list[Scene], torch.Tensor]:
    """The entries' scenes rendered at n_frames (1 + 8k) and their true normalised latents (B, C, T, h, w)."""
    scenes = [replace(Scene.from_dict(e["auxiliary_info"]["world"]), n_frames=n_frames) for e in entries]
    return scenes, vae.encode_normalized(torch.stack([to_model_video(render(s)) for s in scenes]))


def decoded(vae, latents: torch.Tensor) -> np.ndarray:
    """(B, C, T, h, w) normalised latents -> (B, T', H, W, 3) uint8 videos."""
    return np.stack([to_uint8_frames(v) for v in vae.decode_normalized(latents)])


@torch.no_grad()
def reconstruct_suite(vae, entries: list[dict], frames: int) -> tuple[list[np.ndarray], dict]:
    """The suite's true renders through the VAE and back: the ceiling any denoiser on this VAE can reach."""
    videos = [decoded(vae, true_latents(vae, [e], vae_frames_for(frames))[1])[0][:frames] for e in entries]
    return videos, {"gflops_per_video": 0.0, "mixer_gflops_per_video": 0.0, "seconds_per_video": float("nan")}


def colour_shape_scores(rows: pd.DataFrame) -> pd.Series:
    """Per video, the fraction of frames with the first object's colour and shape found: every kind but
    object_class (whose prompts name no colour)."""
    return rows.loc[rows["kind"] != "object_class", "object_frames"]


def paired_differences(rows: pd.DataFrame, reference: str, seed: int = 0) -> pd.DataFrame:
    """Each model's colour+shape minus the reference's on the same prompts and seeds, with a paired bootstrap
    interval (over prompts): the statistic for "m4v-tiny within a few points of dit-tiny". Pairing removes the
    prompts' own difficulty, so it is tighter than comparing the two models' separate intervals."""
    by_model = {name: colour_shape_scores(g).to_numpy() for name, g in rows.groupby("model", sort=False)}
    out = []
    for name, values in by_model.items():
        if name == reference:
            continue
        diff = values - by_model[reference]
        low, high = bootstrap_ci(diff, seed)
        out.append({"model": name, "paired_reference": reference, "colour_shape_minus_reference": diff.mean(),
                    "paired_ci_low": low, "paired_ci_high": high})
    return pd.DataFrame(out, columns=["model", "paired_reference", "colour_shape_minus_reference", "paired_ci_low",
                                      "paired_ci_high"])


UNRECORDED = {"trained_steps": float("nan"), "of_steps": float("nan")}  # no training.json (the VAE ceiling too)


def trained_steps(name: str, weights_root=None) -> dict:
    """How far the weights were trained, from their training.json: {"trained_steps": step reached,
    "of_steps": the run's length} (a snapshot reached `step` of `of_steps`; a finished run its `steps`; a
    reward-tuned model counts its tuning steps). NaN for weights without a record."""
    record_path = weights_path(name, weights_root) / RECORD_FILE
    if not record_path.is_file():
        return dict(UNRECORDED)
    record = json.loads(record_path.read_text())
    steps = record.get("steps")
    return {"trained_steps": record.get("step", steps), "of_steps": record.get("of_steps", steps)}


def world_quality(models: list[str], per_kind: int = 4, frames: int = 16, seed: int = 0, steps=TINY_STEPS,
                  guidance: float = TINY_GUIDANCE, weights_root=None, out=None,
                  vae_ceiling: str | None = "vae-tiny") -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (summary per model, per-video rows); with `out`, writes CSV / JSON / markdown with provenance.
    `vae_ceiling` adds a row for the true videos through that VAE (no denoiser)."""
    commit = git_commit()  # the code that runs, before this run's outputs dirty the tree
    entries = prompt_suite(per_kind, seed=SUITE_SEED, n_frames=frames)
    runs = [(name, lambda name=name: generate_suite(TextToVideo.from_pretrained(name, weights_root), entries, frames,
                                                   seed, steps, guidance)) for name in models]
    trained = {name: trained_steps(name, weights_root) for name in models}  # read up front: a bad path fails fast
    if vae_ceiling:
        vae = CausalVideoVAE.from_pretrained(weights_path(vae_ceiling, weights_root))
        runs.insert(0, (f"{vae_ceiling} (reconstruction)", lambda: reconstruct_suite(vae, entries, frames)))
    rows, summary = [], []
    for name, run in runs:
        videos, cost = run()
        per_video = [{"model": name, "prompt": e["prompt_en"], "kind": e["world_kind"], **score_video(v, e)}
                     for v, e in tqdm(list(zip(videos, entries)), desc=f"oracle {name}", leave=False)]
        rows += per_video
        df = pd.DataFrame(per_video)
        dynamic = df[df["kind"] == "dynamic"]
        static = df[df["kind"] == "static"]
        colour_shape = colour_shape_scores(df)
        low, high = bootstrap_ci(colour_shape, seed)
        motion_low, motion_high = bootstrap_ci(dynamic["motion_right"], seed)
        summary.append({
            "model": name,
            "colour_shape_frames": colour_shape.mean(),
            "colour_shape_ci_low": low, "colour_shape_ci_high": high,
            "shape_frames": df["shape_frames"].mean(),
            "colour_frames": df["colour_frames"].mean(),
            "count_frames": df["count_frames"].mean(),
            "motion_right_dynamic": dynamic["motion_right"].mean(),
            "motion_ci_low": motion_low, "motion_ci_high": motion_high,
            "still_right_static": static["motion_right"].mean(),
            "both_objects_frames": df.get("both_objects_frames", pd.Series(dtype=float)).mean(),
            "relation_frames": df.get("relation_frames", pd.Series(dtype=float)).mean(),
            "background_frames": df.get("background_frames", pd.Series(dtype=float)).mean(),
            "style_frames": df.get("style_frames", pd.Series(dtype=float)).mean(),
            **cost, "videos": len(df),
            **trained.get(name, UNRECORDED)})
    summary_df, rows_df = pd.DataFrame(summary), pd.DataFrame(rows)
    if models:
        summary_df = summary_df.merge(paired_differences(rows_df, models[0], seed), on="model", how="left")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        summary_df.to_csv(out / "world_quality.csv", index=False)
        rows_df.to_csv(out / "world_quality_per_video.csv", index=False)
        (out / "world_quality.md").write_text(summary_df.to_markdown(index=False, floatfmt=".3f") + "\n")
        config = {"models": models, "vae_ceiling": vae_ceiling, "per_kind": per_kind, "frames": frames,
                  "steps": list(steps), "guidance": guidance, "suite_seed": SUITE_SEED,
                  "threads": torch.get_num_threads(), "ci": f"{CI_LEVEL:.0%} percentile bootstrap over videos"}
        (out / "world_quality.json").write_text(json.dumps(
            {"summary": summary_df.to_dict(orient="records"), **provenance(config=config, seeds=[seed], commit=commit)},
            indent=2, default=float))
    return summary_df, rows_df
