"""Pyramidal flow matching schedule (PyramidFlow's PyramidFlowMatchEulerDiscreteScheduler, spec §1.1).

Three stages of increasing resolution each run a flow from a (renoised) start point to an end point. Stage k
covers global noise levels [sigma(range_k), sigma(range_k+1)]; for k > 0 the start is corrected for the
renoising that joins the stages (gamma). Stages get shares of the DiT's 1000 timesteps proportional to the
length of their flow; within a stage the local ratio runs 1 -> 0. Convention: sigma is the noise fraction
(x = sigma * noise + (1 - sigma) * data), as in PyramidFlow's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

STAGE_ENDS = ("range_end", "pyramidflow")


@dataclass
class PyramidSchedule:
    """Stage boundaries, timestep ranges, Euler steps and the renoise between stages."""

    num_train_timesteps: int = 1000
    shift: float = 1.0
    stage_range: tuple = (0.0, 1 / 3, 2 / 3, 1.0)
    gamma: float = 1 / 3
    start_sigmas: list = field(init=False)
    end_sigmas: list = field(init=False)
    original_start_sigmas: list = field(init=False)
    timestep_ranges: list = field(init=False)   # (t_max, t_min) of the DiT timestep per stage

    def __post_init__(self):
        n = self.num_train_timesteps
        t = np.linspace(1, n, n, dtype=np.float32)[::-1] / n                     # 1.0 ... 1/n
        self.global_sigmas = self.shift * t / (1 + (self.shift - 1) * t)
        self.global_timesteps = self.global_sigmas * n
        self.start_sigmas, self.end_sigmas, self.original_start_sigmas = [], [], []
        for k in range(self.n_stages):
            start = float(self.global_sigmas[int(self.stage_range[k] * n)])
            end_index = int(self.stage_range[k + 1] * n)
            end = float(self.global_sigmas[end_index]) if end_index < n else 0.0
            self.original_start_sigmas.append(start)
            if k > 0:
                alpha, _ = self.renoise_coefficients(k)
                start = 1 - alpha * (1 - start)  # the renoised upsampled end of stage k-1 keeps alpha of its data
            self.start_sigmas.append(start)
            self.end_sigmas.append(end)
        lengths = np.array(self.start_sigmas) - np.array(self.end_sigmas)
        bounds = np.concatenate([[0.0], np.cumsum(lengths) / lengths.sum()])
        bounds[-1] = 1.0
        self.timestep_ranges = [
            (float(self.global_timesteps[int(bounds[k] * n)]),
             float(self.global_timesteps[min(int(bounds[k + 1] * n), n - 1)]))
            for k in range(self.n_stages)]

    @property
    def n_stages(self) -> int:
        return len(self.stage_range) - 1

    def renoise_coefficients(self, stage: int) -> tuple[float, float]:
        """(alpha, beta) of x <- alpha * up(x) + beta * block_noise when entering `stage` (> 0)."""
        signal = 1 - self.original_start_sigmas[stage]
        alpha = 1 / (math.sqrt(1 + 1 / self.gamma) * (1 - signal) + signal)
        return alpha, alpha * (1 - signal) / math.sqrt(self.gamma)

    # ---- inference ---------------------------------------------------------------------------------------
    def inference_steps(self, stage: int, num_steps: int, end: str = "range_end") -> tuple[torch.Tensor, torch.Tensor]:
        """(DiT timesteps (N,), local ratios (N+1,) from 1 to 1/n then 0) for `num_steps` Euler steps. `end`:
        the last timestep, the stage's range end t_min ("range_end", the tiny models) or PyramidFlow's
        ("pyramidflow": `set_timesteps` takes the last of the stage's 1000 training timesteps,
        linspace(t_max, t_min, 1001)[:-1], so a stage stops (t_max - t_min) / 1000 above t_min)."""
        if end not in STAGE_ENDS:
            raise ValueError(f"stage end must be one of {STAGE_ENDS}, got {end!r}")
        t_max, t_min = self.timestep_ranges[stage]
        if end == "pyramidflow":
            t_min = float(np.linspace(t_max, t_min, self.num_train_timesteps + 1)[-2])
        timesteps = torch.from_numpy(np.linspace(t_max, t_min, num_steps))
        ratios = torch.from_numpy(np.linspace(1.0, 1.0 / self.num_train_timesteps, num_steps))
        return timesteps, torch.cat([ratios, torch.zeros(1, dtype=ratios.dtype)])

    @staticmethod
    def euler_step(x: torch.Tensor, velocity: torch.Tensor, ratio: float, next_ratio: float) -> torch.Tensor:
        """x <- x + (r_next - r) v, in fp32 (v = start - end, so moving from r = 1 to 0 reaches the end)."""
        return (x.float() + (next_ratio - ratio) * velocity.float()).to(velocity.dtype)

    def renoise(self, x: torch.Tensor, stage: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Nearest-upsample the finished stage 2x and add correlated 2x2 block noise (zero block sum)."""
        alpha, beta = self.renoise_coefficients(stage)
        up = F.interpolate(x, scale_factor=2, mode="nearest")                      # (B, C, 2h, 2w)
        return alpha * up + beta * block_noise(up.shape, self.gamma, generator, up.dtype)

    # ---- training ----------------------------------------------------------------------------------------
    def training_pair(self, stage: int, clean: torch.Tensor, clean_lower: torch.Tensor | None,
                      noise: torch.Tensor, ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_r, target velocity, DiT timestep) for stage-resolution latents; ratio (B,) in [0, 1].

        start = noise (stage 0) or sigma_s * noise + (1 - sigma_s) * up(clean of the stage below);
        end = sigma_e * noise + (1 - sigma_e) * clean; x_r = r start + (1 - r) end; target = start - end.
        """
        s, e = self.start_sigmas[stage], self.end_sigmas[stage]
        start = noise if stage == 0 else s * noise + (1 - s) * F.interpolate(clean_lower, scale_factor=2,
                                                                             mode="nearest")
        end = e * noise + (1 - e) * clean
        r = ratio.view(-1, *([1] * (clean.dim() - 1)))
        t_max, t_min = self.timestep_ranges[stage]
        timestep = t_max + (t_min - t_max) * (1 - ratio)
        return r * start + (1 - r) * end, start - end, timestep


def block_noise(shape, gamma: float, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise whose 2x2 blocks have covariance (1 + gamma) I - gamma 11^T (unit variance, zero block sum
    for gamma = 1/3): only high frequencies, which removes the blockiness of nearest upsampling."""
    B, C, H, W = shape
    cov = (1 + gamma) * torch.eye(4, dtype=torch.float64) - gamma * torch.ones(4, 4, dtype=torch.float64)
    # cov is singular at gamma = 1/3; an eigendecomposition gives a valid square root where Cholesky fails.
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp(min=0).sqrt()                                     # cov = root root^T
    z = torch.randn(B, C, H // 2, W // 2, 4, generator=generator, dtype=torch.float64)
    blocks = (z @ root.T).view(B, C, H // 2, W // 2, 2, 2)
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(B, C, H, W).to(dtype)


def pyramid_latents(latent: torch.Tensor, n_stages: int = 3) -> list[torch.Tensor]:
    """The latent at every stage resolution, lowest first, by repeated bilinear 2x downsampling (PyramidFlow)."""
    levels = [latent]
    for _ in range(n_stages - 1):
        levels.insert(0, F.interpolate(levels[0], scale_factor=0.5, mode="bilinear", align_corners=False))
    return levels


def stage_noise(noise: torch.Tensor, levels_down: int) -> torch.Tensor:
    """Full-resolution noise bilinearly halved `levels_down` times with doubled amplitude (unit variance kept):
    the noise of a lower pyramid stage, as PyramidFlow draws it in training and at sampling."""
    for _ in range(levels_down):
        noise = F.interpolate(noise, scale_factor=0.5, mode="bilinear", align_corners=False) * 2
    return noise
