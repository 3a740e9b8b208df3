"""Models: the four architectures at tiny size (forward + backward), paper-size meta build, checkpoints."""

import pytest
import torch

from m4v.config import MIXERS, M4VConfig
from m4v.pyramid import history_levels, latent_frames, latent_size, stage_frames
from m4v.transformer import M4VTransformer, build_model, count_parameters


def tiny_inputs(cfg, batch=2, frame_index=3, level=2, height=128, width=192, seed=0):
    """A stage sequence at tiny size: 3 history frames + the current frame, text with per-sample padding."""
    g = torch.Generator().manual_seed(seed)
    sizes, levels = stage_frames(height, width, frame_index, level)
    frames = [torch.randn(batch, cfg.latent_channels, h, w, generator=g) for h, w in sizes]
    text = torch.randn(batch, cfg.text_len, cfg.text_dim, generator=g)
    mask = torch.zeros(batch, cfg.text_len, dtype=torch.bool)
    for b in range(batch):
        mask[b, : cfg.text_len - 2 * b] = True
    pooled = torch.randn(batch, cfg.pooled_text_dim, generator=g)
    timestep = torch.rand(batch, generator=g) * 1000
    return frames, levels, text, mask, pooled, timestep


@pytest.mark.parametrize("mixer", MIXERS)
def test_tiny_forward_backward_every_variant(mixer):
    cfg = M4VConfig.tiny(mixer=mixer)
    model = build_model(cfg)
    # adaLN-Zero and the zero output layer make the untrained output exactly 0; perturb to test gradients.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    inputs = tiny_inputs(cfg)
    out = model(*inputs)
    assert out.shape == inputs[0][-1].shape
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_zero_initialised_model_predicts_zero():
    cfg = M4VConfig.tiny()
    out = build_model(cfg)(*tiny_inputs(cfg))
    assert torch.count_nonzero(out) == 0


def test_pyramid_history_and_sizes():
    assert [latent_frames(n) for n in (57, 121, 241)] == [8, 16, 31]
    assert latent_size(768, 1280) == (96, 160) and latent_size(768, 1280, 0) == (24, 40)
    assert history_levels(5, 2) == [0, 0, 0, 1, 2]
    assert history_levels(1, 0) == [0]
    sizes, levels = stage_frames(768, 1280, 30, 2)
    tokens = sum((h // 2) * (w // 2) for h, w in sizes)
    assert tokens == 15_360 and levels[-3:] == [1, 2, 2] and len(levels) == 31


def test_paper_config_meta_build_and_parameter_count():
    model = build_model(M4VConfig.paper(mixer="attention"), device="meta")
    n = count_parameters(model)
    # PyramidFlow-miniFLUX is about 2.0B (spec §1.2: 8 x 36 D^2 + 16 x 15 D^2 + embedders).
    assert 1.9e9 < n < 2.1e9, n
    assert next(model.parameters()).device.type == "meta"


def test_checkpoint_round_trip(tmp_path):
    cfg = M4VConfig.tiny(mixer="m4v")
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    loaded = M4VTransformer.from_pretrained(tmp_path)
    assert loaded.cfg == cfg
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    inputs = tiny_inputs(cfg)
    assert torch.equal(model(*inputs), loaded(*inputs))


def test_from_pretrained_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        M4VTransformer.from_pretrained(tmp_path)


def test_config_rejects_unknown_mixer_and_keys():
    with pytest.raises(ValueError, match="mixer"):
        M4VConfig.tiny(mixer="rnn")
    with pytest.raises(ValueError, match="unknown keys"):
        M4VConfig.from_dict({"hidden": 3})


@pytest.mark.parametrize("toggle", ["text_recomposition", "registers", "zigzag"])
def test_table3_ablations_are_config_switches(toggle):
    """Each MM-DiM part can be switched off by config alone and the model still trains."""
    cfg = M4VConfig.tiny(mixer="m4v", **{toggle: False})
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = model(*tiny_inputs(cfg))
    out.square().mean().backward()
    assert (model.registers is None) == (toggle == "registers")
    paths = {block.mmdim.path_index for block in model.single_blocks}
    assert paths == ({None} if toggle == "zigzag" else {0, 1, 2, 3})
