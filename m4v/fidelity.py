"""Rewards for reward tuning: a frame-fidelity model (an HPSv2 stand-in trained on world frames), the
degradations it learns to rank below clean renders, and the combined CLIP + fidelity reward."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from m4v.checkpoint import WEIGHTS_NAME, load_weights, save_weights, weights_path
from m4v.tiny_clip import clip_score, load_tiny_clip

DEGRADATIONS = ("blur", "noise", "color_shift", "ghost", "mix", "smear", "resample")


class FidelityReward(nn.Module):
    """Small strided CNN: (B, 3, 64, 64) frames in [-1, 1] -> (B,) scores; higher is a cleaner rendering."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.channels = tuple(channels)
        # A full-resolution stem sees pixel-level blur and noise; each stage then halves the resolution.
        layers, c_in = [nn.Conv2d(3, self.channels[0], 3, padding=1), nn.SiLU()], self.channels[0]
        for c_out in self.channels:                         # 64 -> 32 -> 16 -> 8 -> 4 px
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images.float()).mean((-2, -1))   # (B, C): pooled, so any frame size works
        return self.head(features)[:, 0]                            # (B,)

    def save_pretrained(self, out) -> Path:
        return save_weights(self, {"channels": list(self.channels)}, out)

    @classmethod
    def from_pretrained(cls, path, device: str = "cpu") -> FidelityReward:
        if not Path(path, WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"no fidelity reward weights at {path}; train them with "
                                    f"`m4v-bench train --model reward-tiny --out {path}`")
        config, state = load_weights(path, device)
        model = cls(**config)
        model.load_state_dict(state)
        return model.to(device).eval()


# ---- degradations ------------------------------------------------------------------------------------------------
def _uniform(generator: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=generator).item()


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(3, H, W) separable Gaussian blur with reflect padding."""
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=image.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    x = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")          # (1, 3, H+2r, W+2r)
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return x[0]


def _shift(image: torch.Tensor, generator: torch.Generator, lo: int, hi: int) -> torch.Tensor:
    """The frame rolled by lo..hi pixels in a random direction along each axis."""
    magnitude = torch.randint(lo, hi + 1, (2,), generator=generator)
    sign = torch.randint(0, 2, (2,), generator=generator) * 2 - 1
    dy, dx = (magnitude * sign).tolist()
    return torch.roll(image, (dy, dx), dims=(-2, -1))


def degrade_one(image: torch.Tensor, kind: str, generator: torch.Generator, other: torch.Tensor) -> torch.Tensor:
    """A worse version of one (3, H, W) frame in [-1, 1]; `other` is a different frame for blending."""
    if kind == "blur":
        return _gaussian_blur(image, _uniform(generator, 0.6, 2.0))
    if kind == "noise":
        return image + _uniform(generator, 0.04, 0.3) * torch.randn(image.shape, generator=generator)
    if kind == "color_shift":           # per-channel gain and offset: the palette drifts off the world's colours
        gain = 1 + _uniform(generator, 0.1, 0.35) * (2 * torch.rand(3, 1, 1, generator=generator) - 1)
        offset = _uniform(generator, 0.08, 0.35) * (2 * torch.rand(3, 1, 1, generator=generator) - 1)
        return image * gain + offset
    if kind == "ghost":                 # a faint displaced copy, as when consecutive frames bleed into each other
        return torch.lerp(image, _shift(image, generator, 2, 8), _uniform(generator, 0.2, 0.5))
    if kind == "mix":                   # two different frames blended
        return torch.lerp(image, other, _uniform(generator, 0.15, 0.5))
    if kind == "smear":                 # motion blur: average of copies along a random axis
        length = int(torch.randint(3, 8, (), generator=generator))
        dims = -1 if torch.rand((), generator=generator) < 0.5 else -2
        return torch.stack([torch.roll(image, k - length // 2, dims=dims) for k in range(length)]).mean(0)
    if kind == "resample":              # detail lost to a low-resolution pass
        factor = int(torch.randint(2, 5, (), generator=generator))
        small = F.interpolate(image[None], scale_factor=1 / factor, mode="area")
        return F.interpolate(small, size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    raise ValueError(f"unknown degradation {kind!r}; known: {DEGRADATIONS}")


def degrade(images: torch.Tensor, generator: torch.Generator, kinds=DEGRADATIONS) -> torch.Tensor:
    """(B, 3, H, W) clean frames in [-1, 1] -> one random degradation each (1 or 2 stacked), clamped to [-1, 1];
    deterministic given the generator's state."""
    flipped = images.flip(-1).roll(1, dims=0)            # differs from each frame even when B == 1
    out = []
    for image, other in zip(images.float(), flipped.float()):
        for _ in range(1 + int(torch.rand((), generator=generator) < 0.25)):
            kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
            image = degrade_one(image, kind, generator, other)
        out.append(image.clamp(-1, 1))
    return torch.stack(out)


# ---- combined reward ---------------------------------------------------------------------------------------------
def combined_reward(frames: torch.Tensor, prompts: list[str], clip_bundle, fidelity_model: FidelityReward
                    ) -> torch.Tensor:
    """Equal-weight text alignment + fidelity per frame (B, 3, H, W) or per video (B, 3, T, H, W, frame mean);
    (B,), differentiable with respect to `frames`.

    Both terms live in [0, 1]: CLIP score / 100 (= max(cos, 0)) and sigmoid of the fidelity score, whose pairwise
    training makes sigmoid(r_a - r_b) a preference probability, so sigmoid(r) reads as "preferred over a frame
    scoring 0". `clip_bundle` is (model, tokenizer) or load_tiny_clip's (model, preprocess, tokenizer).
    """
    clip_model, tokenizer = clip_bundle[0], clip_bundle[-1]
    if frames.ndim == 5:
        b, _, t = frames.shape[:3]
        images = frames.movedim(2, 1).flatten(0, 1)                              # (B*T, 3, H, W)
        prompts = [p for p in prompts for _ in range(t)]
    else:
        b, t, images = frames.shape[0], 1, frames
    alignment = clip_score(clip_model, tokenizer, images, prompts) / 100          # (B*T,) in [0, 1]
    fidelity = torch.sigmoid(fidelity_model(images))                             # (B*T,) in (0, 1)
    return (alignment + fidelity).view(b, t).mean(1)


def load_reward_models(weights_root=None) -> tuple:
    """The frozen reward models of reward learning (spec §2: r2 = CLIP, r1 = HPSv2): clip-tiny's bundle and
    reward-tiny, gradients off, as `combined_reward` takes them (shared by the pyramidal and the Wan recipes)."""
    clip = load_tiny_clip(weights_path("clip-tiny", weights_root))
    clip[0].requires_grad_(False)
    fidelity = FidelityReward.from_pretrained(weights_path("reward-tiny", weights_root)).eval()
    return clip, fidelity.requires_grad_(False)
