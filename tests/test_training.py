"""Flow-matching training step: history shapes, gradients reach the transformer, the loss goes down."""

import pytest
import torch

from m4v.config import M4VConfig
from m4v.pipeline import TextCondition
from m4v.scheduler import PyramidSchedule
from m4v.training import flow_matching_loss, make_optimizer, train_step
from m4v.transformer import build_model


def batch(cfg, b=2, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(b, cfg.latent_channels, frames, 16, 24, generator=g)
    text = TextCondition(torch.randn(b, cfg.text_len, cfg.text_dim, generator=g),
                         torch.ones(b, cfg.text_len, dtype=torch.bool),
                         torch.randn(b, cfg.pooled_text_dim, generator=g))
    return latents, text


def test_history_and_gradients_reach_every_block():
    cfg = M4VConfig.tiny(mixer="m4v")
    model = build_model(cfg)
    latents, text = batch(cfg)
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, args: sizes.append([tuple(f.shape[-2:]) for f in args[0]]))
    sample = flow_matching_loss(model, latents, text, PyramidSchedule(), torch.Generator().manual_seed(0),
                                unit=2, stage=2)
    hook.remove()
    assert sizes == [[(8, 12), (16, 24), (16, 24)]]
    sample.loss.backward()
    # adaLN-Zero: at init the zero output layer and the modulations are where the gradient arrives first
    assert model.proj_out.weight.grad.abs().sum() > 0
    assert torch.isfinite(sample.loss)


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = M4VConfig.tiny(mixer="m4v")
    model = build_model(cfg)
    optimizer = make_optimizer(model, lr=2e-3)
    latents, text = batch(cfg)
    schedule = PyramidSchedule()

    def mean_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(flow_matching_loss(model, latents, text, schedule, g).loss.item() for _ in range(6)) / 6

    before = mean_loss()
    g = torch.Generator().manual_seed(7)
    for _ in range(80):
        train_step(model, optimizer, latents, text, schedule, g)
    after = mean_loss()
    assert after < 0.9 * before, (before, after)
    # after training, the gradient has flowed into the MM-DiM blocks' Mamba weights too
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters() if "mmdim.mamba.in_proj" in n)


# ---- history noise, the all-stages sampler, the null condition (issue 20) ----------------------------------
def test_shared_history_noise_uses_one_sigma_per_sample():
    """PyramidFlow's `last_cond_noisy_sigma`: one sigma per sample for all its history frames. With zero clean
    frames a frame is sigma * noise, so its standard deviation over 128x128 values estimates sigma (~0.5%)."""
    from m4v.training import corrupt_history

    clean = [torch.zeros(4, 1, 128, 128) for _ in range(3)]
    stds = {}
    for mode in ("shared", "per_frame"):
        frames = corrupt_history(clean, torch.Generator().manual_seed(0), "cpu", history_noise=mode)
        stds[mode] = torch.stack([f.flatten(1).std(dim=1) for f in frames], dim=1)       # (samples, frames)
    spread = lambda s: s.max(dim=1).values / s.min(dim=1).values  # noqa: E731
    assert (spread(stds["shared"]) < 1.03).all()
    assert (spread(stds["per_frame"]) > 1.1).any()
    assert (stds["shared"] < 1 / 3 * 1.03).all()


def test_balanced_units_follow_pyramidflow_sample_stage_length():
    """PyramidFlow: the last stage trains with u units, the two lower ones with T + 1 - u (0-based positions
    sum to T - 1), u uniform over 1..T."""
    from m4v.training import balanced_units

    generator = torch.Generator().manual_seed(0)
    draws = [balanced_units(5, generator) for _ in range(500)]
    assert all(low == mid and low + high == 4 for low, mid, high in draws)
    counts = torch.bincount(torch.tensor([d[2] for d in draws]), minlength=5)
    assert counts.min() > 70                                                # ~100 each


def test_all_stages_sampler_trains_every_stage_with_balanced_units():
    from m4v.training import flow_matching_loss_all_stages

    cfg = M4VConfig.tiny()
    model = build_model(cfg)
    latents, text = batch(cfg, b=5, frames=4)
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append((len(args[0]), args[1][-1], args[0][0].shape[0])))
    loss, samples = flow_matching_loss_all_stages(model, latents, text, PyramidSchedule(),
                                                  torch.Generator().manual_seed(0))
    assert [c[1] for c in calls] == [0, 1, 2]                               # every stage in the batch
    assert [c[2] for c in calls] == [2, 2, 1]                               # the batch split in columns
    assert samples[0].unit + samples[2].unit == 3 and samples[0].unit == samples[1].unit
    per_sample = torch.cat([((s.prediction - s.target) ** 2).flatten(1).mean(1) for s in samples])
    torch.testing.assert_close(loss, per_sample.mean())                     # PyramidFlow's mean over samples


def test_null_condition_follows_the_model_config():
    from m4v.pipeline import null_condition

    cfg = M4VConfig.tiny()
    _, text = batch(cfg)
    empty = TextCondition(torch.ones_like(text.tokens), text.mask.clone(), torch.ones_like(text.pooled))
    text.unconditional = empty
    legacy = build_model(M4VConfig.tiny(null_condition="zeros"), "meta", False)
    zeros = null_condition(legacy, text)
    assert torch.count_nonzero(zeros.tokens) == 0 and zeros.mask[:, 0].all() and not zeros.mask[:, 1:].any()
    assert null_condition(build_model(cfg, "meta", False), text) is empty
    text.unconditional = None
    with pytest.raises(ValueError, match="empty prompt"):
        null_condition(build_model(cfg, "meta", False), text)


def test_sampling_feeds_the_empty_prompt_to_the_unconditional_branch():
    from m4v.pipeline import GenerationConfig, generate_latents

    cfg = M4VConfig.tiny()
    model = build_model(cfg)
    _, text = batch(cfg)
    text.unconditional = TextCondition(torch.full_like(text.tokens, 7.0), text.mask, text.pooled)
    seen = []
    model.register_forward_hook(lambda m, args, out: seen.append(args[2]))
    generate_latents(model, text, GenerationConfig(latent_frames=1, latent_height=8, latent_width=8,
                                                   first_frame_steps=(1, 1, 1)))
    assert all(torch.equal(tokens[:2], text.unconditional.tokens) for tokens in seen)  # [uncond ; cond]
    assert all(torch.equal(tokens[2:], text.tokens) for tokens in seen)
