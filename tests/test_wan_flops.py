"""`m4v-bench run wan-flops`: FlopCounterMode on the real Wan modules (meta) against a count by hand."""

import json

import pandas as pd
import pytest

from benchmarks import cli
from benchmarks.paper import wan_flops
from m4v.wan import WanConfig


def _mamba_per_token(cfg: WanConfig) -> int:
    """One Mamba step per token: in_proj D -> 2E, depthwise conv (K taps), x_proj E -> R + 2N, dt_proj R -> E,
    the scan (4N + 3 multiply-adds per channel: m4v/ops/flops.py), out_proj E -> D; 2 FLOPs per multiply-add."""
    D, E, N, R, K = cfg.dim, cfg.d_inner, cfg.d_state, cfg.resolved_dt_rank, cfg.d_conv
    return 2 * (D * 2 * E + E * K + E * (R + 2 * N) + R * E + E * (4 * N + 3) + E * D)


def _by_hand(cfg: WanConfig, frames: int, h: int, w: int, text_tokens: int) -> dict:
    """Mixer and total FLOPs of one forward (batch 1) of a latent of frames x h x w (after the VAE)."""
    D, pt, ph, pw = cfg.dim, *cfg.patch_size
    L = (frames // pt) * (h // ph) * (w // pw)
    if cfg.mixer == "attention":
        mixer = 8 * L * D * D + 4 * L * L * D                      # q, k, v, o + QK^T + AV
    else:
        scanned = L + frames // pt if cfg.registers else L         # one register before every frame
        mixer = 2 * scanned * _mamba_per_token(cfg)                # forward and backward scans
    cross = 2 * L * D * D * 2 + 2 * text_tokens * D * D * 2 + 4 * L * text_tokens * D
    ffn = 2 * 2 * L * D * cfg.ffn_dim
    embed = (2 * L * D * cfg.in_channels * pt * ph * pw + 2 * (cfg.freq_dim * D + D * D + D * 6 * D)
             + 2 * text_tokens * (cfg.text_dim * D + D * D))
    out = 2 * L * D * cfg.out_channels * pt * ph * pw
    return {"mixer": cfg.num_layers * mixer, "total": cfg.num_layers * (mixer + cross + ffn) + embed + out}


@pytest.mark.parametrize("mixer", ["attention", "mm-dim"])
def test_wan_1_3b_at_480p_counts_as_by_hand(mixer):
    cfg = WanConfig.wan_1_3b(mixer=mixer)
    counted = wan_flops.count(cfg, 480, 832, 81)
    _, frames, h, w = wan_flops.latent_shape(cfg, 480, 832, 81)
    assert (frames, h, w) == (21, 60, 104)
    expected = _by_hand(cfg, frames, h, w, wan_flops.TEXT_TOKENS)
    assert counted["mixer"] == expected["mixer"]
    assert counted["total"] == expected["total"]


def test_run_wan_flops_through_the_cli(tmp_path, monkeypatch):
    """The suite's CSV and JSON (provenance) at tiny sizes, rows checked by hand, savings against wan."""
    monkeypatch.setattr(wan_flops, "SIZES", {"tiny": WanConfig.tiny})
    monkeypatch.setattr(wan_flops, "RESOLUTIONS", {"64x96": (64, 96)})
    out = tmp_path / "wf"
    assert cli.main(["run", "wan-flops", "--out", str(out)]) == 0
    df = pd.read_csv(out / "wan_flops.csv").set_index("variant")
    assert list(df.index) == ["wan", "m4v-wan"]
    for variant, mixer in wan_flops.VARIANTS.items():
        expected = _by_hand(WanConfig.tiny(mixer=mixer), 21, 8, 12, wan_flops.TEXT_TOKENS)
        assert df.loc[variant, "mixer_tflops"] == pytest.approx(expected["mixer"] / 1e12, rel=1e-12)
        assert df.loc[variant, "total_tflops"] == pytest.approx(expected["total"] / 1e12, rel=1e-12)
    assert df.loc["m4v-wan", "total_saving"] == pytest.approx(
        1 - df.loc["m4v-wan", "total_tflops"] / df.loc["wan", "total_tflops"])
    payload = json.loads((out / "wan_flops.json").read_text())
    assert payload["provenance"]["git_commit"] and payload["table2_seconds"] == {"wan": 1700, "m4v-wan": 1210}
