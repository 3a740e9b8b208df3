"""Pyramid flow schedule against PyramidFlow's published values (anchor-codebases.md §1.10)."""

import pytest
import torch

from m4v.scheduler import PyramidSchedule, block_noise, pyramid_latents


@pytest.fixture(scope="module")
def schedule():
    return PyramidSchedule()


def test_stage_sigmas_match_pyramidflow(schedule):
    assert schedule.start_sigmas == pytest.approx([1.0, 0.80024, 0.50075], abs=1e-5)
    assert schedule.end_sigmas == pytest.approx([0.667, 0.334, 0.0], abs=1e-6)
    assert schedule.original_start_sigmas == pytest.approx([1.0, 0.667, 0.334], abs=1e-6)


def test_stage_timestep_ranges_match_pyramidflow(schedule):
    assert schedule.timestep_ranges == [(1000.0, 744.0), (744.0, 386.0), (386.0, 1.0)]


def test_renoise_coefficients_match_pyramidflow(schedule):
    assert schedule.renoise_coefficients(1) == pytest.approx((0.5999, 0.6930), abs=1e-4)
    assert schedule.renoise_coefficients(2) == pytest.approx((0.7496, 0.4337), abs=1e-4)
    # The renoised end of stage k-1 lands exactly on stage k's corrected start.
    for k in (1, 2):
        alpha, _ = schedule.renoise_coefficients(k)
        assert alpha * (1 - schedule.end_sigmas[k - 1]) == pytest.approx(1 - schedule.start_sigmas[k], abs=1e-9)


def test_block_noise_covariance():
    g = torch.Generator().manual_seed(0)
    noise = block_noise((64, 1, 32, 32), 1 / 3, g)
    blocks = noise.view(64, 1, 16, 2, 16, 2).permute(0, 1, 2, 4, 3, 5).reshape(-1, 4)
    cov = blocks.T @ blocks / len(blocks)
    expected = (4 / 3) * torch.eye(4) - (1 / 3) * torch.ones(4, 4)
    assert torch.allclose(cov, expected, atol=0.03)
    assert blocks.sum(-1).abs().max() < 1e-5                      # zero block sum at gamma = 1/3


def test_inference_steps_and_euler_reach_the_end(schedule):
    timesteps, ratios = schedule.inference_steps(1, 10)
    assert timesteps[0] == 744 and timesteps[-1] == 386 and len(timesteps) == 10
    assert ratios[0] == 1.0 and ratios[-2] == pytest.approx(0.001) and ratios[-1] == 0.0
    start, end = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    x = start
    for i in range(10):  # the exact velocity integrates start -> end
        x = schedule.euler_step(x, start - end, ratios[i].item(), ratios[i + 1].item())
    torch.testing.assert_close(x, end, atol=1e-5, rtol=1e-5)


def test_training_pair_interpolates_and_targets_start_minus_end(schedule):
    clean = torch.randn(3, 4, 8, 8)
    lower = pyramid_latents(clean, 3)[1][:, :, :4, :4]
    noise = torch.randn_like(clean)
    ratio = torch.tensor([1.0, 0.5, 0.0])
    x, target, timestep = schedule.training_pair(1, clean, lower, noise, ratio)
    s, e = schedule.start_sigmas[1], schedule.end_sigmas[1]
    start = s * noise + (1 - s) * torch.nn.functional.interpolate(lower, scale_factor=2, mode="nearest")
    end = e * noise + (1 - e) * clean
    torch.testing.assert_close(x[0], start[0])
    torch.testing.assert_close(x[2], end[2])
    torch.testing.assert_close(target, start - end)
    assert timestep.tolist() == pytest.approx([744.0, 565.0, 386.0])


def test_pyramid_latents_shapes():
    levels = pyramid_latents(torch.randn(1, 16, 96, 160))
    assert [tuple(t.shape[-2:]) for t in levels] == [(24, 40), (48, 80), (96, 160)]
