"""The paper temporal branch (spec §1.5): tokens, tiles, causality, the flattened-vector attention, legacy loading."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from m4v.blocks import MMDiMMixer, build_stage_layout, history_positions
from m4v.config import M4VConfig
from m4v.recipes import weights_path
from m4v.temporal import PooledTemporalBranch, TemporalBranch, TileQueryTemporalBranch, build_temporal_branch
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
    cfg = M4VConfig.tiny(mixer="m4v", temporal_variant="paper")
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
    assert (cfg.temporal_variant, cfg.history_rope, cfg.null_condition) == ("tiles", "interpolate", "empty_prompt")
    assert M4VConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("temporal_variant", "history_rope", "null_condition")}
    legacy = M4VConfig.from_dict(old)
    assert (legacy.temporal_variant, legacy.history_rope, legacy.null_condition) == ("pooled", "linspace", "zeros")
    with pytest.raises(ValueError, match="temporal_variant"):
        M4VConfig.tiny(temporal_variant="banana")


def test_shipped_m4v_tiny_loads_strictly_as_the_tiles_variant_its_record_names():
    directory = weights_path("m4v-tiny")
    saved = json.loads((directory / "config.json").read_text())
    assert (saved["temporal_variant"], saved["history_rope"], saved["null_condition"]) == (
        "tiles", "interpolate", "empty_prompt")
    model = M4VTransformer.from_pretrained(directory)                       # load_state_dict(strict=True)
    assert all(isinstance(b.mmdim.temporal, TileQueryTemporalBranch) for b in model.single_blocks)
    record = json.loads((directory / "training.json").read_text())
    assert record["steps"] == 15_000 and record["command"].startswith("m4v-bench train --model m4v-tiny ")
    assert record["config"]["model"]["temporal_variant"] == "tiles"
    # a config saved before the fields existed still builds the legacy branch
    legacy = {k: v for k, v in saved.items() if k not in ("temporal_variant", "history_rope", "null_condition")}
    legacy_model = M4VTransformer(M4VConfig.from_dict(legacy))
    assert all(isinstance(b.mmdim.temporal, PooledTemporalBranch) for b in legacy_model.single_blocks)


# ---- the tile-query readings (issue 31): the current tiles are the only queries and the only receivers ----------
TILE_READINGS = ["tiles", "tiles-out", "tiles-self", "tiles-shared-kv"]


def random_tile_branch(reading):
    cfg = M4VConfig.tiny(temporal_variant=reading)
    torch.manual_seed(0)
    branch = build_temporal_branch(cfg)
    for linear in (branch.to_q, branch.to_k, branch.to_v, branch.to_out):
        if linear is not None:
            torch.nn.init.normal_(linear.weight, std=0.1)               # the E-producing layer is zero otherwise
    return cfg, branch


@pytest.mark.parametrize("reading", TILE_READINGS)
def test_tile_readings_match_a_loop_over_tiles_and_keys(reading):
    """Each tile i: logits <q_i, k_j> of flattened (positions x D) vectors / sqrt(S D) over the key tokens (the
    pooled history, plus the tiles for -self / -shared-kv), softmax, sum of w_j v_j, the output projection where
    the reading has one; back at the tile's own positions of the current frame."""
    cfg, branch = random_tile_branch(reading)
    assert isinstance(branch, TileQueryTemporalBranch) and not branch.covers_history
    video = video_for(SIZES, cfg, batch=1)
    with torch.no_grad():
        out = branch(video, SIZES, LEVELS)                                  # (1, 96, E)
        tokens = TemporalBranch.tokens(video, SIZES, (2, 3))[0]            # (19, S, D): 3 history + 16 tiles
        keys = tokens if reading in ("tiles-self", "tiles-shared-kv") else tokens[:3]
        k = branch.to_k(keys)
        v = k if reading == "tiles-shared-kv" else branch.to_v(keys)
        expected = []
        for tile in tokens[3:]:
            q = branch.to_q(tile)
            logits = torch.stack([(q * kj).sum() for kj in k]) / math.sqrt(6 * cfg.hidden_size)
            mixed = sum(w * vj for w, vj in zip(logits.softmax(0), v))
            expected.append(mixed if branch.to_out is None else branch.to_out(mixed))
    assert out.shape == (1, 8 * 12, cfg.d_inner)
    current = out[0].view(8, 12, -1)
    for row in range(4):
        for col in range(4):
            torch.testing.assert_close(current[2 * row:2 * row + 2, 3 * col:3 * col + 3].reshape(6, -1),
                                       expected[row * 4 + col], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reading", TILE_READINGS)
def test_tile_readings_causality_and_reach(reading):
    """The output covers the current frame only; a tile's output depends on the history always and on the other
    tiles only where the reading lets tiles be keys; with no history, `tiles` / `tiles-out` have nothing to attend
    (exactly 0)."""
    cfg, branch = random_tile_branch(reading)
    video = video_for(SIZES, cfg)
    changed_history, changed_tile = video.clone(), video.clone()
    changed_history[:, 0:6] += 1.0                                         # the oldest history frame
    current = changed_tile[:, 36:].view(2, 8, 12, -1)
    current[:, 0:2, 0:3] += 1.0                                            # tile (0, 0) only
    with torch.no_grad():
        before = branch(video, SIZES, LEVELS).view(2, 8, 12, -1)
        after_history = branch(changed_history, SIZES, LEVELS).view(2, 8, 12, -1)
        after_tile = branch(changed_tile, SIZES, LEVELS).view(2, 8, 12, -1)
        alone = branch(video_for([(8, 12)], cfg), [(8, 12)], [2])
    assert not torch.allclose(before, after_history)
    others = [(slice(2 * r, 2 * r + 2), slice(3 * c, 3 * c + 3))
              for r in range(4) for c in range(4) if (r, c) != (0, 0)]
    moved = [not torch.allclose(before[:, a, b], after_tile[:, a, b]) for a, b in others]
    if reading in ("tiles", "tiles-out"):
        assert not any(moved)
        assert torch.count_nonzero(alone) == 0 and alone.shape == (2, 96, cfg.d_inner)
    else:
        assert all(moved)
        assert torch.count_nonzero(alone) > 0


@pytest.mark.parametrize("reading", TILE_READINGS)
def test_zero_initialised_tile_branch_is_silent_and_mmdim_adds_it_to_the_current_frame_only(reading):
    cfg = M4VConfig.tiny(mixer="m4v", temporal_variant=reading)
    torch.manual_seed(1)
    mixer = MMDiMMixer(cfg, 0)
    layout = build_stage_layout(cfg, SIZES, LEVELS, torch.ones(1, cfg.text_len, dtype=torch.bool))
    h = torch.randn(1, cfg.text_len + 132, cfg.hidden_size)
    registers = torch.randn(3, cfg.hidden_size)
    mixer.temporal.zero_init()
    with torch.no_grad():
        assert torch.count_nonzero(mixer.temporal(h[:, cfg.text_len:], SIZES, LEVELS)) == 0
        for linear in (mixer.temporal.to_v, mixer.temporal.to_out):
            if linear is not None:
                torch.nn.init.normal_(linear.weight, std=0.1)
        with_branch, temporal = mixer(h, layout, registers), mixer.temporal
        mixer.temporal = None
        without = mixer(h, layout, registers)
        mixer.temporal = temporal
    first_current = cfg.text_len + 36
    torch.testing.assert_close(with_branch[:, :first_current], without[:, :first_current])  # text and history
    assert not torch.allclose(with_branch[:, first_current:], without[:, first_current:])


def test_tile_reading_parameter_shapes():
    """k D -> D and v D -> E without an output projection (tiles, tiles-self); v D -> D then output D -> E
    (tiles-out); one shared k = v D -> D then output D -> E (tiles-shared-kv)."""
    D, E = M4VConfig.tiny().hidden_size, M4VConfig.tiny().d_inner
    shapes = {r: {n: tuple(p.shape) for n, p in build_temporal_branch(M4VConfig.tiny(temporal_variant=r))
                  .named_parameters()} for r in TILE_READINGS}
    assert shapes["tiles"] == shapes["tiles-self"] == {"to_q.weight": (D, D), "to_k.weight": (D, D),
                                                         "to_v.weight": (E, D)}
    assert shapes["tiles-out"] == {"to_q.weight": (D, D), "to_k.weight": (D, D), "to_v.weight": (D, D),
                                   "to_out.weight": (E, D)}
    assert shapes["tiles-shared-kv"] == {"to_q.weight": (D, D), "to_k.weight": (D, D), "to_out.weight": (E, D)}
