"""The paper temporal branch (spec §1.5): tokens, tiles, causality, the flattened-vector attention, legacy loading."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from m4v.blocks import MMDiMMixer, build_stage_layout, history_positions
from m4v.config import M4VConfig
from m4v.recipes import weights_path
from m4v.temporal import PooledTemporalBranch, TemporalBranch
from m4v.transformer import M4VTransformer

# A stage sequence at the last pyramid stage: two history frames at the lowest level, one a level up, current.
SIZES, LEVELS = [(2, 3), (2, 3), (4, 6), (8, 12)], [0, 0, 1, 2]


def random_branch(cfg):
    torch.manual_seed(0)
    branch = TemporalBranch(cfg)
    torch.nn.init.normal_(branch.to_out.weight, std=0.1)                   # zero-initialised otherwise
    return branch


def video_for(sizes, cfg, batch=2):
    return torch.randn(batch, sum(h * w for h, w in sizes), cfg.hidden_size)


def test_tokens_are_pooled_history_and_current_tiles():
    cfg = M4VConfig.tiny()
    video = video_for(SIZES, cfg)
    tokens = TemporalBranch.tokens(video, SIZES, (2, 3))
    assert tokens.shape == (2, 3 + 16, 6, cfg.hidden_size)                 # 3 history + (8/2)(12/3) tiles
    frames = torch.split(video, [h * w for h, w in SIZES], dim=1)
    grid = lambda f, h, w: f.transpose(1, 2).reshape(2, cfg.hidden_size, h, w)  # noqa: E731
    # the 1-level-up history frame is the mean of its 2x2 blocks (the pyramid's own downsampling)
    pooled = F.avg_pool2d(grid(frames[2], 4, 6), 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens[:, 2], pooled)
    # the current frame's tiles are its 2x3 blocks in raster order (space-to-depth, torch's unfold)
    blocks = F.unfold(grid(frames[3], 8, 12), kernel_size=(2, 3), stride=(2, 3))    # (B, D*6, 16)
    blocks = blocks.view(2, cfg.hidden_size, 6, 16).permute(0, 3, 2, 1)
    torch.testing.assert_close(tokens[:, 3:], blocks)


def test_first_unit_uses_the_lowest_pyramid_grid_too():
    """No history: the current frame at the last stage is still cut into tiles of the 1/4 grid."""
    cfg = M4VConfig.tiny()
    tokens = TemporalBranch.tokens(video_for([(8, 12)], cfg), [(8, 12)], (2, 3))
    assert tokens.shape == (2, 16, 6, cfg.hidden_size)
    out = random_branch(cfg)(video_for([(8, 12)], cfg), [(8, 12)], [2])
    assert out.shape == (2, 96, cfg.d_inner)


def test_branch_matches_a_loop_over_token_pairs():
    """Logits = <q_i, k_j> of the flattened (positions x D) vectors / sqrt(S D), block-causal, softmax, output
    linear; every token's result back at its own positions."""
    cfg = M4VConfig.tiny()
    branch = random_branch(cfg)
    video = video_for(SIZES, cfg, batch=1)
    with torch.no_grad():
        out = branch(video, SIZES, LEVELS)
        tokens = TemporalBranch.tokens(video, SIZES, (2, 3))[0]            # (T, S, D)
        q, k, v = branch.to_q(tokens), branch.to_k(tokens), branch.to_v(tokens)
        time = [0, 1, 2] + [3] * 16
        mixed = []
        for i in range(len(time)):
            keys = [j for j in range(len(time)) if time[j] <= time[i]]
            logits = torch.stack([(q[i] * k[j]).sum() for j in keys]) / math.sqrt(6 * cfg.hidden_size)
            mixed.append(sum(w * v[j] for w, j in zip(logits.softmax(0), keys)))
        expected = branch.to_out(torch.stack(mixed))                      # (T, S, E)
    # history frame 2 (4x6) gets its token's 2x3 output nearest-upsampled
    frame2 = out[0, 12:36].view(4, 6, -1)
    torch.testing.assert_close(frame2[::2, ::2], expected[2].view(2, 3, -1))
    torch.testing.assert_close(frame2[1::2, 1::2], expected[2].view(2, 3, -1))
    # current tile (row 1, column 2) sits at rows 2-3, columns 6-8 of the 8x12 current frame
    current = out[0, 36:].view(8, 12, -1)
    torch.testing.assert_close(current[2:4, 6:9].reshape(6, -1), expected[3 + 1 * 4 + 2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("changed_frame", [1, 2, 3])
def test_branch_is_causal_along_time(changed_frame):
    """A frame's output does not change when a later frame (history or the current one) changes."""
    cfg = M4VConfig.tiny()
    branch = random_branch(cfg)
    video = video_for(SIZES, cfg)
    starts = [0, 6, 12, 36, 132]
    changed = video.clone()
    changed[:, starts[changed_frame]:starts[changed_frame + 1]] += 1.0
    with torch.no_grad():
        before, after = branch(video, SIZES, LEVELS), branch(changed, SIZES, LEVELS)
    torch.testing.assert_close(before[:, :starts[changed_frame]], after[:, :starts[changed_frame]])
    assert not torch.allclose(before[:, starts[changed_frame]:], after[:, starts[changed_frame]:])


def test_zero_initialised_branch_is_silent_and_mmdim_adds_it_everywhere():
    cfg = M4VConfig.tiny(mixer="m4v")
    branch = TemporalBranch(cfg)
    branch.zero_init()
    assert torch.count_nonzero(branch(video_for(SIZES, cfg), SIZES, LEVELS)) == 0
    torch.manual_seed(1)
    mixer = MMDiMMixer(cfg, 0)
    torch.nn.init.normal_(mixer.temporal.to_out.weight, std=0.1)
    layout = build_stage_layout(cfg, SIZES, LEVELS, torch.ones(1, cfg.text_len, dtype=torch.bool))
    h = torch.randn(1, cfg.text_len + 132, cfg.hidden_size)
    with torch.no_grad():
        registers = torch.randn(3, cfg.hidden_size)
        with_branch, temporal = mixer(h, layout, registers), mixer.temporal
        mixer.temporal = None
        without = mixer(h, layout, registers)
        mixer.temporal = temporal
    n_text = cfg.text_len
    torch.testing.assert_close(with_branch[:, :n_text], without[:, :n_text])   # text untouched
    assert not torch.allclose(with_branch[:, n_text:n_text + 6], without[:, n_text:n_text + 6])  # history too


def test_history_rope_positions_follow_pyramidflow_interpolate():
    """PyramidFlow: F.interpolate(arange(n), m, 'linear'), align_corners=False -> position 2i + 0.5 at half
    resolution, 1.5 for one token of four; the first implementation used linspace."""
    torch.testing.assert_close(history_positions(2, 4, "interpolate", "cpu"), torch.tensor([0.5, 2.5]))
    torch.testing.assert_close(history_positions(1, 4, "interpolate", "cpu"), torch.tensor([1.5]))
    torch.testing.assert_close(history_positions(2, 4, "linspace", "cpu"), torch.tensor([0.0, 3.0]))
    torch.testing.assert_close(history_positions(4, 4, "interpolate", "cpu"), torch.arange(4.0))


def test_new_configs_default_to_the_paper_readings_and_old_ones_load_as_legacy():
    cfg = M4VConfig.tiny()
    assert (cfg.temporal_variant, cfg.history_rope, cfg.null_condition) == ("paper", "interpolate", "empty_prompt")
    assert M4VConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("temporal_variant", "history_rope", "null_condition")}
    legacy = M4VConfig.from_dict(old)
    assert (legacy.temporal_variant, legacy.history_rope, legacy.null_condition) == ("pooled", "linspace", "zeros")
    with pytest.raises(ValueError, match="temporal_variant"):
        M4VConfig.tiny(temporal_variant="tiles")


def test_shipped_m4v_tiny_loads_strictly_as_the_paper_variant_its_record_names():
    directory = weights_path("m4v-tiny")
    saved = json.loads((directory / "config.json").read_text())
    assert (saved["temporal_variant"], saved["history_rope"], saved["null_condition"]) == (
        "paper", "interpolate", "empty_prompt")
    model = M4VTransformer.from_pretrained(directory)                       # load_state_dict(strict=True)
    assert all(isinstance(b.mmdim.temporal, TemporalBranch) for b in model.single_blocks)
    record = json.loads((directory / "training.json").read_text())
    assert record["steps"] == 15_000 and record["command"].startswith("m4v-bench train --model m4v-tiny ")
    assert record["config"]["model"]["temporal_variant"] == "paper"
    # a config saved before the fields existed still builds the legacy branch
    legacy = {k: v for k, v in saved.items() if k not in ("temporal_variant", "history_rope", "null_condition")}
    legacy_model = M4VTransformer(M4VConfig.from_dict(legacy))
    assert all(isinstance(b.mmdim.temporal, PooledTemporalBranch) for b in legacy_model.single_blocks)
