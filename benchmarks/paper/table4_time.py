"""`m4v-bench table4-time`: Table 4's inference column. One denoiser forward of each architecture is timed at
every distinct frame layout of the autoregressive pyramid schedule (random weights; a warm-up call, then the
timed repeats), then summed over the schedule with each layout's number of calls (median over repeats with its
interval and min-max, benchmarks/compute/measure.py), so the ratios can be set beside the paper's
812 / 858 / 570 / 613 s.

Paper size (768 x 1280, 241 frames, PyramidFlow's 20 / 10 steps per stage, CFG as a batch of 2, bf16) needs a
GPU: one call at the last step attends over ~30 history frames plus the current one at 2.4 B parameters. On a
CPU the command refuses paper size and offers `--size tiny`: the tiny architectures over their own schedule.
"""

from __future__ import annotations

import pandas as pd
import torch

from benchmarks.compute.measure import Timing, describe_load, machine_load, median_interval, timed
from benchmarks.paper.paper_numbers import TABLE4
from m4v.config import TABLE4_VARIANTS, M4VConfig
from m4v.pyramid import N_LEVELS, latent_frames, stage_frames
from m4v.transformer import build_model

# PyramidFlow's inference defaults at 768p (the paper gives none): 20 steps per stage for the first frame, 10 for
# every later one; CFG on both, i.e. every call runs a batch of 2 (unconditional; conditional).
PAPER_SETTING = {"height": 768, "width": 1280, "video_frames": 241, "first_frame_steps": (20, 20, 20),
                 "video_steps": (10, 10, 10), "batch": 2, "dtype": torch.bfloat16}
# The tiny models as the quality-vs-compute suite samples them (8 steps per stage, CFG), 17 frames at 64 x 64.
TINY_SETTING = {"height": 64, "width": 64, "video_frames": 17, "first_frame_steps": (8, 8, 8),
                "video_steps": (8, 8, 8), "batch": 2, "dtype": torch.float32}
GPU_NEEDED = ("--size paper: one paper-size forward (2.4 B parameters, ~30 history frames at 768p) needs a GPU "
              "(--device cuda); on this machine `--size tiny` times the tiny architectures over their schedule")


def schedule_calls(height: int, width: int, video_frames: int, first_frame_steps, video_steps) -> dict:
    """{(frame sizes, levels): transformer calls} of one generation: every latent frame runs every pyramid stage,
    each stage its number of steps, over the frame's history (m4v.sampling.generate_latents)."""
    calls: dict = {}
    for unit in range(latent_frames(video_frames)):
        steps = first_frame_steps if unit == 0 else video_steps
        for level in range(N_LEVELS):
            sizes, levels = stage_frames(height, width, unit, level)
            key = (tuple(sizes), tuple(levels))
            calls[key] = calls.get(key, 0) + steps[level]
    return calls


def architecture(size: str, mixer: str) -> M4VConfig:
    """The paper-size or the shipped tiny architecture with this single-stream mixer."""
    if size == "paper":
        return M4VConfig.paper(mixer=mixer)
    from m4v.recipes.denoiser import tiny_config

    return tiny_config("m4v-tiny", mixer=mixer)


@torch.no_grad()
def time_forward(model, sizes, levels, batch: int, device, dtype, repeats: int, warmup: int = 1) -> Timing:
    """One forward with this frame layout: `warmup` untimed calls, then `repeats` timed ones (measure.timed)."""
    cfg = model.cfg
    frames = [torch.randn(batch, cfg.latent_channels, h, w, device=device, dtype=dtype) for h, w in sizes]
    text = torch.randn(batch, cfg.text_len, cfg.text_dim, device=device, dtype=dtype)
    mask = torch.ones(batch, cfg.text_len, dtype=torch.bool, device=device)
    pooled = torch.randn(batch, cfg.pooled_text_dim, device=device, dtype=dtype)
    timestep = torch.full((batch,), 500.0, device=device)
    return timed(lambda: model(frames, list(levels), text, mask, pooled, timestep), warmup=warmup,
                 repeats=repeats, device=str(device))


def inference_table(size: str = "tiny", device: str = "cpu", repeats: int = 3, log=print, warmup: int = 1) -> tuple:
    """-> (a row per architecture: schedule seconds with interval, ratio to full attention, the paper's; a row per
    layout). The machine's load at the start and the end is in both frames' `attrs["machine_load"]`."""
    if size not in ("paper", "tiny"):
        raise ValueError(f"--size: paper or tiny, got {size!r}")
    if size == "paper" and torch.device(device).type != "cuda":
        raise ValueError(GPU_NEEDED)
    setting = PAPER_SETTING if size == "paper" else TINY_SETTING
    calls = schedule_calls(setting["height"], setting["width"], setting["video_frames"],
                           setting["first_frame_steps"], setting["video_steps"])
    load_start = machine_load()
    log(f"[table4-time] {describe_load(load_start)}; {warmup} warm-up + {repeats} timed forwards per layout")
    rows, layouts = [], []
    for variant, mixer in TABLE4_VARIANTS.items():
        torch.manual_seed(0)
        model = build_model(architecture(size, mixer), device=device).to(dtype=setting["dtype"]).eval()
        totals = [0.0] * repeats
        for (sizes, levels), n in calls.items():
            t = time_forward(model, sizes, levels, setting["batch"], device, setting["dtype"], repeats, warmup)
            # Repeat r of every layout, weighted by its calls, is one draw of the whole schedule's time: the
            # median and order-statistic interval over those R totals are the schedule's own (summing each
            # layout's interval ends would give a range with no stated coverage).
            totals = [total + n * s for total, s in zip(totals, t.seconds)]
            layouts.append({"variant": variant, "frames": len(sizes), "levels": list(levels),
                            "tokens": sum(h * w for h, w in sizes) // model.cfg.patch_size**2, "calls": n,
                            **t.columns("seconds_per_call"), "warmup": warmup})
        median, low, high = median_interval(totals)
        log(f"{variant}: {median:.2f} s (interval {low:.2f}-{high:.2f}, min-max {min(totals):.2f}-"
            f"{max(totals):.2f}, {repeats} repeats) over {sum(calls.values())} calls ({len(calls)} layouts)")
        rows.append({"variant": variant, "seconds": median, "seconds_ci_low": low, "seconds_ci_high": high,
                     "seconds_min": min(totals), "seconds_max": max(totals), "repeats": repeats, "warmup": warmup,
                     "paper_seconds": TABLE4[variant]["seconds"]})
        del model
    load = {"start": load_start, "end": machine_load()}
    log(f"[table4-time] at the end: {describe_load(load['end'])}")
    df = pd.DataFrame(rows)
    by = df.set_index("variant")
    df["ratio_to_full_attn"] = df["seconds"] / by.loc["full_attn", "seconds"]
    df["paper_ratio_to_full_attn"] = df["paper_seconds"] / by.loc["full_attn", "paper_seconds"]
    df.insert(1, "size", size)
    layouts = pd.DataFrame(layouts)
    df.attrs["machine_load"] = layouts.attrs["machine_load"] = load
    return df, layouts
