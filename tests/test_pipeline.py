"""Autoregressive pyramidal generation with the tiny model: shapes, history per step, CFG, determinism."""

import torch

from m4v.config import M4VConfig
from m4v.sampling import GenerationConfig, TextCondition, generate_latents
from m4v.transformer import build_model


def tiny_model(mixer="m4v"):
    torch.manual_seed(0)
    model = build_model(M4VConfig.tiny(mixer=mixer))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def text_condition(cfg, batch=1):
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(batch, cfg.text_len, dtype=torch.bool)
    tokens, pooled = (torch.randn(batch, cfg.text_len, cfg.text_dim, generator=g),
                      torch.randn(batch, cfg.pooled_text_dim, generator=g))
    unconditional = TextCondition(torch.randn(batch, cfg.text_len, cfg.text_dim, generator=g), mask,
                                  torch.randn(batch, cfg.pooled_text_dim, generator=g))  # "the empty prompt"
    return TextCondition(tokens, mask, pooled, unconditional)


def test_generation_shapes_history_and_call_count():
    model = tiny_model()
    config = GenerationConfig(latent_frames=3, latent_height=16, latent_width=24, first_frame_steps=(2, 2, 2),
                              video_steps=(1, 1, 1))
    latents, stats = generate_latents(model, text_condition(model.cfg), config)
    assert latents.shape == (1, model.cfg.latent_channels, 3, 16, 24)
    assert torch.isfinite(latents).all()
    assert stats.forwards == 3 * 2 + 2 * 3 * 1
    # Last frame, last stage: the most recent frame at full size, the one before at half size, then current.
    assert stats.sequence_sizes[-1] == [(8, 12), (16, 24), (16, 24)]
    # Last frame, first stage: every earlier frame at the lowest level.
    assert stats.sequence_sizes[-3] == [(4, 6), (4, 6), (4, 6)]
    assert stats.sequence_sizes[0] == [(4, 6)]                       # first frame: no history


def test_generation_is_deterministic_and_guidance_matters():
    model = tiny_model("attention")
    text = text_condition(model.cfg)
    config = GenerationConfig(latent_frames=2, first_frame_steps=(1, 1, 1), video_steps=(1, 1, 1))
    a, _ = generate_latents(model, text, config)
    b, _ = generate_latents(model, text, config)
    assert torch.equal(a, b)
    c, _ = generate_latents(model, text, GenerationConfig(latent_frames=2, first_frame_steps=(1, 1, 1),
                                                          video_steps=(1, 1, 1), guidance_scale=1.0,
                                                          video_guidance_scale=1.0))
    assert not torch.allclose(a, c)


def test_generation_compute_is_counted_by_both_counters_and_scored():
    import numpy as np

    from benchmarks.compute.measured_generation import run_generation
    from evaluators import Video, get_evaluator

    model = tiny_model()
    config = GenerationConfig(latent_frames=2, first_frame_steps=(1, 1, 1), video_steps=(1, 1, 1))
    text = text_condition(model.cfg, batch=3)   # counted per prompt and scaled: must equal the batched calls
    latents, compute = run_generation(model, text, config)
    assert compute["forwards"] == 6 and compute["flops"] > 0
    assert compute["flops_fvcore"] == compute["flops"]
    # The per-layout count equals FlopCounterMode over the real generation, call by call.
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        generate_latents(model, text, config)
    assert compute["flops"] == sum(counter.get_flop_counts()["M4VTransformer"].values())
    assert 0 < compute["mixer_flops"] < compute["flops"]
    video = Video(np.zeros((2, 8, 8, 3), dtype=np.uint8), 8, source="gen", aux={"generation": compute})
    record = get_evaluator("compute").evaluate([video])[0]
    assert record.score == compute["flops"] / 1e12 and record.extra["tflops_fvcore"] == compute["flops_fvcore"] / 1e12
    assert compute["seconds"] > 0 and compute["peak_mb"] >= 0
    assert not get_evaluator("compute").applies(Video(np.zeros((1, 8, 8, 3), dtype=np.uint8), 8))


class PerfectVelocity(torch.nn.Module):
    """Returns start - clean for the current frame: a flow that knows its endpoint, so Euler from ratio 1 to 0
    must land exactly on `clean` whatever the steps and guidance."""

    def __init__(self, clean):
        super().__init__()
        self.clean, self.start = clean, None

    def forward(self, frames, levels, *condition):
        x = frames[-1]
        if self.start is None:
            self.start = x[:len(self.clean)].clone()   # CFG stacks [uncond; cond] on the batch
        velocity = self.start - self.clean
        return velocity.repeat(len(x) // len(velocity), 1, 1, 1)


def test_denoise_frame_from_the_last_stage_ends_on_the_flow_endpoint():
    from m4v.sampling import denoise_frame
    from m4v.scheduler import PyramidSchedule

    cfg = M4VConfig.tiny()
    clean = torch.randn(2, cfg.latent_channels, 8, 8)
    start = torch.randn_like(clean)
    text = text_condition(cfg, batch=2)
    for steps, guidance in [((1, 1, 1), 1.0), ((3, 3, 5), 4.0)]:
        out = denoise_frame(PerfectVelocity(clean), start, [], text, TextCondition.null_like(text), PyramidSchedule(),
                            steps, guidance, torch.Generator().manual_seed(0), first_stage=2)
        torch.testing.assert_close(out, clean, rtol=0, atol=1e-5)


def test_given_leading_frames_are_kept_and_condition_the_rest():
    model = tiny_model()
    text = text_condition(model.cfg)
    config = GenerationConfig(latent_frames=3, latent_height=16, latent_width=24, first_frame_steps=(2, 2, 2),
                              video_steps=(1, 1, 1))
    given = torch.randn(1, model.cfg.latent_channels, 1, 16, 24, generator=torch.Generator().manual_seed(5))
    latents, stats = generate_latents(model, text, config, given=given)
    assert torch.equal(latents[:, :, :1], given)
    assert stats.forwards == 2 * 3 * 1                              # only the two later frames are sampled
    assert stats.sequence_sizes[0] == [(4, 6), (4, 6)]              # the given frame is their history
    other, _ = generate_latents(model, text, config, given=given + 1)
    assert not torch.allclose(other[:, :, 1:], latents[:, :, 1:])
