"""Flow-matching training step: history shapes, gradients reach the transformer, the loss goes down."""

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
