"""`m4v-bench run wan-flops`: self-mixer and whole-model TFLOPs of Wan2.1 and M4V*(Wan2.1), one forward.

Published sizes (1.3B, 14B) on the meta device under torch's FlopCounterMode (m4v/ops/flops.py's convention;
nothing is a hand formula here: tests/test_wan_flops.py checks the rows against one). The self-mixer is each
block's `attn1` (Q, K, V, O + QK^T + AV: Table 4's paper convention) or its MM-DiM; one forward of batch 1 at a
denoising step (no CFG doubling), 512 umT5 tokens (WanPipeline's max_sequence_length), the Wan VAE's latent
(16 channels, 4x in time, 8x in space).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from benchmarks.compute.flops import wan_mixer_names as mixer_names
from benchmarks.core.provenance import provenance
from m4v.ops import torch_flops
from m4v.wan import WanConfig, build_wan

SIZES = {"1.3B": WanConfig.wan_1_3b, "14B": WanConfig.wan_14b}
RESOLUTIONS = {"480x832": (480, 832), "720x1280": (720, 1280)}
FRAMES = 81
VARIANTS = {"wan": "attention", "m4v-wan": "mm-dim"}
TEXT_TOKENS = 512
VAE_TEMPORAL, VAE_SPATIAL = 4, 8
# The paper's Table 2: Wan2.1 1700 s, M4V*(Wan2.1) 1210 s (-28.8 %) at 720 x 1280 x 81, one GPU (size unstated;
# spec §1.7 reads it as 14B).
TABLE2_SECONDS = {"wan": 1700, "m4v-wan": 1210}
TABLE2_SETTING = ("720x1280", FRAMES)


def latent_shape(cfg: WanConfig, height: int, width: int, frames: int) -> tuple:
    """(C, F, H, W) of the Wan VAE's latent of a frames x height x width video."""
    return (cfg.in_channels, (frames - 1) // VAE_TEMPORAL + 1, height // VAE_SPATIAL, width // VAE_SPATIAL)


def wan_inputs(cfg: WanConfig, height: int, width: int, frames: int, device: str = "meta") -> tuple:
    with torch.device(device):
        return (torch.zeros(1, *latent_shape(cfg, height, width, frames)), torch.full((1,), 500.0),
                torch.zeros(1, TEXT_TOKENS, cfg.text_dim))


def count(cfg: WanConfig, height: int, width: int, frames: int) -> dict:
    """{"mixer", "total"} FLOPs of one forward, the real modules on meta."""
    model = build_wan(cfg, device="meta", init=False).eval()
    flops = torch_flops(model, wan_inputs(cfg, height, width, frames))
    names = set(mixer_names(cfg))
    mixer = sum(n for key, n in flops.by_module.items() if key.split(".", 1)[-1] in names)
    return {"mixer": mixer, "total": flops.total}


def wan_flops() -> pd.DataFrame:
    rows = []
    for size, preset in SIZES.items():
        for res, (h, w) in RESOLUTIONS.items():
            for variant, mixer in VARIANTS.items():
                cfg = preset(mixer=mixer)
                c, f, lh, lw = latent_shape(cfg, h, w, FRAMES)
                counts = count(cfg, h, w, FRAMES)
                paper = TABLE2_SECONDS[variant] if (res, FRAMES) == TABLE2_SETTING and size == "14B" else None
                rows.append({"size": size, "resolution": res, "frames": FRAMES, "variant": variant,
                             "latent_tokens": f * (lh // cfg.patch_size[1]) * (lw // cfg.patch_size[2]),
                             "mixer_tflops": counts["mixer"] / 1e12, "total_tflops": counts["total"] / 1e12,
                             "paper_seconds": paper})
    df = pd.DataFrame(rows)
    base = df[df["variant"] == "wan"].set_index(["size", "resolution"])
    for column, saving in (("mixer_tflops", "mixer_saving"), ("total_tflops", "total_saving"),
                           ("paper_seconds", "paper_time_saving")):
        df[saving] = [1 - v / base.loc[(s, r), column] if pd.notna(v) else None
                      for s, r, v in zip(df["size"], df["resolution"], df[column])]
    return df


def write_wan_flops(df: pd.DataFrame, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "wan_flops.csv", index=False)
    payload = {"provenance": provenance({"sizes": {k: v().to_dict() for k, v in SIZES.items()},
                                         "resolutions": RESOLUTIONS, "frames": FRAMES, "text_tokens": TEXT_TOKENS,
                                         "counter": "torch FlopCounterMode on meta, one forward, batch 1"}),
               "table2_seconds": TABLE2_SECONDS, "rows": json.loads(df.to_json(orient="records"))}
    (out_dir / "wan_flops.json").write_text(json.dumps(payload, indent=2) + "\n")
    return out_dir / "wan_flops.csv"
