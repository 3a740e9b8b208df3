"""`m4v-bench bench-mixer`: one paper-width single-stream block, attention vs MM-DiM, median seconds (with interval)
vs FLOPs."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from benchmarks.compute.measure import describe_load, machine_load, timed
from benchmarks.core.provenance import provenance
from benchmarks.paper.table4 import CURVE_RESOLUTIONS
from m4v.blocks import SingleStreamBlock, build_stage_layout
from m4v.config import M4VConfig
from m4v.ops import torch_flops
from m4v.pyramid import N_LEVELS, stage_frames
from m4v.transformer import M4VTransformer

# (resolution, latent frames) -> visual tokens at the last AR step, final stage: 960 ... 15,360.
DEFAULT_POINTS = ("384p/1", "384p/8", "768p/1", "768p/2", "768p/16", "768p/31")
MIXERS = {"attention": "attention", "mmdim": "m4v"}


def _point_layout(cfg: M4VConfig, point: str, device: str):
    res, n_latent = point.split("/")
    if res not in CURVE_RESOLUTIONS:
        raise ValueError(f"bench-mixer: point {point!r}: resolution must be one of {list(CURVE_RESOLUTIONS)}")
    height, width = CURVE_RESOLUTIONS[res]
    sizes, levels = stage_frames(height, width, int(n_latent) - 1, N_LEVELS - 1)
    p = cfg.patch_size
    token_sizes = [(h // p, w // p) for h, w in sizes]
    mask = torch.ones(1, cfg.text_len, dtype=torch.bool, device=device)
    return build_stage_layout(cfg, token_sizes, levels, mask), sum(h * w for h, w in token_sizes)


def _block(cfg: M4VConfig, device: str) -> SingleStreamBlock:
    """A single-stream block with the model's own initialisation (one-block model, weights moved over)."""
    model = M4VTransformer(cfg.__class__(**{**cfg.to_dict(), "num_dual_layers": 0, "num_single_layers": 1}))
    model.initialize_weights()
    with torch.no_grad():  # adaLN-Zero gates would make the block an identity; give them a value
        model.single_blocks[0].modulation.linear.bias.normal_(0, 0.02)
    return model.single_blocks[0].to(device).eval(), (model.registers.to(device) if model.registers is not None
                                                       else None)


class _Mixer(torch.nn.Module):
    """Calls a block's mixer alone, so the counters and the timer see exactly that."""

    def __init__(self, block: SingleStreamBlock, layout, registers):
        super().__init__()
        self.block, self.layout, self.registers = block, layout, registers

    def forward(self, h):
        return self.block.mix(h, self.layout, self.registers)


def _mixer_flops(cfg: M4VConfig, point: str) -> int:
    """FLOPs of the block's mixer on the meta device (FlopCounterMode), the same layout as the timed run."""
    with torch.device("meta"):
        block = SingleStreamBlock(cfg, 0)
        registers = torch.zeros(cfg.n_pyramid_levels, cfg.hidden_size) if cfg.registers else None
    layout, n_visual = _point_layout(cfg, point, "meta")
    h = torch.zeros(1, cfg.text_len + n_visual, cfg.hidden_size, device="meta")
    return torch_flops(_Mixer(block, layout, registers), (h,)).total


def bench_mixer(points=None, repeats: int = 3, device: str = "cpu", log=print, warmup: int = 1) -> pd.DataFrame:
    """Seconds of the mixer alone and of the whole block, attention vs MM-DiM, at growing token counts: each
    `warmup` untimed calls, then the median of `repeats` timed ones with its interval and min-max. The machine's
    load at the start and the end is in the frame's `attrs["machine_load"]`."""
    points = points or DEFAULT_POINTS
    load_start = machine_load()
    log(f"[bench-mixer] {describe_load(load_start)}; {warmup} warm-up + {repeats} timed calls each")
    rows = []
    blocks = {}
    for name, mixer in MIXERS.items():
        cfg = M4VConfig.paper(mixer=mixer)
        blocks[name] = (cfg, *_block(cfg, device))
    for point in points:
        row = {"point": point}
        for name, (cfg, block, registers) in blocks.items():
            layout, n_visual = _point_layout(cfg, point, device)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(1, cfg.text_len + n_visual, cfg.hidden_size, generator=g).to(device)
            temb = torch.randn(1, cfg.hidden_size, generator=g).to(device)
            mixer = _Mixer(block, layout, registers)
            with torch.no_grad():  # warm-up inside timed: numba cache load, allocator growth at this length
                t_mixer = timed(partial(mixer, x), warmup=warmup, repeats=repeats, device=device)
                t_block = timed(partial(block, x, temb, layout, registers), warmup=warmup, repeats=repeats,
                                device=device)
            row["tokens"] = cfg.text_len + n_visual
            row.update(t_mixer.columns(f"{name}_mixer_s"))
            row.update(t_block.columns(f"{name}_block_s"))
            row[f"{name}_mixer_gflops"] = _mixer_flops(cfg, point) / 1e9
            log(f"[bench-mixer] {point} {name}: mixer {t_mixer.describe()}; block {t_block.describe()}")
        # Ratios of the medians.
        row["mixer_time_ratio"] = row["mmdim_mixer_s"] / row["attention_mixer_s"]
        row["mixer_flop_ratio"] = row["mmdim_mixer_gflops"] / row["attention_mixer_gflops"]
        row["block_time_ratio"] = row["mmdim_block_s"] / row["attention_block_s"]
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["machine_load"] = {"start": load_start, "end": machine_load()}
    log(f"[bench-mixer] at the end: {describe_load(df.attrs['machine_load']['end'])}")
    return df


def crossover_tokens(df: pd.DataFrame):
    """Smallest measured token count from which the MM-DiM mixer is faster than attention (None if never)."""
    faster = df[df["mixer_time_ratio"] < 1.0]
    return int(faster["tokens"].min()) if len(faster) else None


def summary(df: pd.DataFrame) -> str:
    last = df.iloc[-1]
    time_saving, flop_saving = 1 - last["mixer_time_ratio"], 1 - last["mixer_flop_ratio"]
    verdict = "meets" if time_saving >= flop_saving else "misses"
    return (f"at {int(last['tokens'])} tokens: MM-DiM mixer time saving {100 * time_saving:.1f}% vs FLOP saving "
            f"{100 * flop_saving:.1f}% ({verdict} the goal); crossover at {crossover_tokens(df)} tokens")


def write(df: pd.DataFrame, out_dir: Path, config: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "bench_mixer.csv", index=False)
    payload = {"provenance": provenance(config, seeds=[0]), "summary": summary(df),
               "machine_load": df.attrs.get("machine_load"), "rows": df.to_dict(orient="records")}
    (out_dir / "bench_mixer.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
