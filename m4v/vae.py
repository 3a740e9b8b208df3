"""Causal 3D video VAE (PyramidFlow's CausalVideoVAE shape, spec §1.1): 8x space, 8x time, first frame alone.

Causal convolutions pad time only on the past side (with the first frame repeated), so latent frame j sees
pixel frames <= 8j, and T pixel frames = 1 + 8 (T_latent - 1). Latent normalisation (PyramidFlow-miniFLUX's
constants) lives here too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from m4v.checkpoint import load_weights, save_weights

# Latent normalisation (anchor-codebases.md §1.9): first frame with image statistics, the rest with video ones.
IMAGE_SHIFT, IMAGE_SCALE = -0.04, 1 / 1.8726
VIDEO_SHIFT, VIDEO_SCALE = -0.2343, 1 / 3.0986


@dataclass(frozen=True)
class VAEConfig:
    """Block widths and which blocks halve space / time (3 of each: 8x)."""

    channels: tuple = (128, 256, 512, 512)
    down_space: tuple = (True, True, True, False)
    down_time: tuple = (True, True, True, False)
    encoder_layers: int = 2
    decoder_layers: int = 3
    latent_channels: int = 16
    norm_groups: int = 32
    # Latent normalisation: first frame with image statistics, the rest with video ones (PyramidFlow's values;
    # a tiny VAE trained here stores its own, measured on world videos at the end of training).
    image_shift: float = IMAGE_SHIFT
    image_scale: float = IMAGE_SCALE
    video_shift: float = VIDEO_SHIFT
    video_scale: float = VIDEO_SCALE

    @classmethod
    def paper(cls) -> VAEConfig:
        return cls()

    @classmethod
    def tiny(cls) -> VAEConfig:
        # 16 latent channels as at paper size: with 4, an 8x8 latent could not carry the world's small shapes.
        return cls(channels=(16, 32, 64, 64), encoder_layers=1, decoder_layers=1, latent_channels=16, norm_groups=4)


class CausalConv3d(nn.Module):
    """Conv3d padded (k_t - 1) frames in the past (first frame repeated) and symmetrically in space."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: tuple = (1, 1, 1)):
        super().__init__()
        self.time_pad, self.space_pad = kernel - 1, kernel // 2
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride)

    def forward(self, x: Tensor) -> Tensor:                                     # (B, C, T, H, W)
        if x.shape[2] == 1:
            return self.forward_image(x)
        x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1), x], dim=2)
        x = F.pad(x, (self.space_pad,) * 4)
        return self.conv(x)

    def forward_image(self, x: Tensor) -> Tensor:                               # (B, C, 1, H, W)
        """A single frame: every padded frame equals it, so the 3D conv is a 2D conv with the kernel summed over
        time (same result, a third of the work: image pre-training is mostly this)."""
        stride = self.conv.stride[1:]
        out = F.conv2d(x[:, :, 0], self.conv.weight.sum(dim=2), self.conv.bias, stride=stride,
                       padding=self.space_pad)
        return out[:, :, None]

    @torch.no_grad()
    def inflate_from_image(self) -> None:
        """Move each kernel's weight onto its current-frame tap (the summed kernel is all an image-trained conv
        has learnt): a video then goes through as frames through the image conv, and time-strided convs keep
        the last frame of each window. Image training updates every tap alike, so without this each conv
        averages its window evenly and motion blurs away."""
        w = self.conv.weight
        w[:, :, -1] = w.sum(dim=2)
        w[:, :, :-1] = 0


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame: plain GroupNorm would pool over time and let the future leak in."""

    def forward(self, x: Tensor) -> Tensor:                                     # (B, C, T, H, W)
        B, C, T, H, W = x.shape
        y = super().forward(x.transpose(1, 2).reshape(B * T, C, H, W))
        return y.reshape(B, T, C, H, W).transpose(1, 2)


class ResBlock3d(nn.Module):
    """GroupNorm -> SiLU -> causal conv, twice, with a 1x1x1 shortcut when widths differ."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = FrameGroupNorm(groups, c_in), CausalConv3d(c_in, c_out)
        self.norm2, self.conv2 = FrameGroupNorm(groups, c_out), CausalConv3d(c_out, c_out)
        self.shortcut = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class FrameAttention(nn.Module):
    """Self-attention over the positions of each frame (the mid block's attention; causal in time)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = FrameGroupNorm(groups, channels)
        self.qkv, self.out = nn.Linear(channels, 3 * channels), nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        B, C, T, H, W = x.shape
        h = self.norm(x).permute(0, 2, 3, 4, 1).reshape(B * T, H * W, C)         # (B T, H W, C)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        out = self.out(F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0])
        return x + out.reshape(B, T, H, W, C).permute(0, 4, 1, 2, 3)


class Downsample(nn.Module):
    """Halve space and/or time with a strided causal conv; with time, frame 0 stays alone (T = 1 + 2k -> 1 + k)."""

    def __init__(self, channels: int, space: bool, time: bool):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, stride=(2 if time else 1, 2 if space else 1, 2 if space else 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double space (nearest) and/or time (every frame but the first repeated), then a causal conv."""

    def __init__(self, channels: int, space: bool, time: bool):
        super().__init__()
        self.space, self.time = space, time
        self.conv = CausalConv3d(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.time and x.shape[2] > 1:
            x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(2, dim=2)], dim=2)
        if self.space:
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


class CausalVideoVAE(nn.Module):
    """encode: (B, 3, 1 + 8k, H, W) in [-1, 1] -> mean, logvar (B, C, 1 + k, H/8, W/8); decode: the inverse."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        ch, g = cfg.channels, cfg.norm_groups
        enc = [CausalConv3d(3, ch[0])]
        for i, c in enumerate(ch):
            c_in = ch[max(i - 1, 0)]
            enc += [ResBlock3d(c_in if j == 0 else c, c, g) for j in range(cfg.encoder_layers)]
            if cfg.down_space[i] or cfg.down_time[i]:
                enc.append(Downsample(c, cfg.down_space[i], cfg.down_time[i]))
        enc += [ResBlock3d(ch[-1], ch[-1], g), FrameAttention(ch[-1], g), ResBlock3d(ch[-1], ch[-1], g),
                FrameGroupNorm(g, ch[-1]), nn.SiLU(), CausalConv3d(ch[-1], 2 * cfg.latent_channels)]
        self.encoder = nn.Sequential(*enc)
        dec = [CausalConv3d(cfg.latent_channels, ch[-1]), ResBlock3d(ch[-1], ch[-1], g), FrameAttention(ch[-1], g),
               ResBlock3d(ch[-1], ch[-1], g)]
        for i in reversed(range(len(ch))):
            c_in = ch[min(i + 1, len(ch) - 1)]
            dec += [ResBlock3d(c_in if j == 0 else ch[i], ch[i], g) for j in range(cfg.decoder_layers)]
            if cfg.down_space[i] or cfg.down_time[i]:
                dec.append(Upsample(ch[i], cfg.down_space[i], cfg.down_time[i]))
        dec += [FrameGroupNorm(g, ch[0]), nn.SiLU(), CausalConv3d(ch[0], 3)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, video: Tensor) -> tuple[Tensor, Tensor]:
        if (video.shape[2] - 1) % 8 or video.shape[-1] % 8 or video.shape[-2] % 8:
            raise ValueError(f"VAE.encode: need (B, 3, 1 + 8k, H, W) with H, W divisible by 8, "
                             f"got {tuple(video.shape)}")
        mean, logvar = self.encoder(video).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, latent: Tensor) -> Tensor:
        return self.decoder(latent)

    def inflate_from_image(self) -> None:
        """Causal inflation of every conv after image-only training (see CausalConv3d.inflate_from_image)."""
        for m in self.modules():
            if isinstance(m, CausalConv3d):
                m.inflate_from_image()

    def encode_normalized(self, video: Tensor) -> Tensor:
        """(B, 3, 1 + 8k, H, W) in [-1, 1] -> normalised latent mean, what the denoiser is trained on."""
        return normalize_latent(self.encode(video)[0], self.cfg)

    def decode_normalized(self, latent: Tensor) -> Tensor:
        """Inverse of encode_normalized (up to the VAE's reconstruction error)."""
        return self.decode(denormalize_latent(latent, self.cfg))

    def save_pretrained(self, directory) -> Path:
        return save_weights(self, asdict(self.cfg), directory)

    @classmethod
    def from_pretrained(cls, directory, device: str = "cpu") -> CausalVideoVAE:
        config, state = load_weights(directory, device)
        cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        model = cls(cfg)
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def forward(self, video: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """-> reconstruction, mean, logvar (reparameterised sample when `sample`)."""
        mean, logvar = self.encode(video)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if sample else mean
        return self.decode(z), mean, logvar


def normalize_latent(z: Tensor, cfg: VAEConfig | None = None) -> Tensor:
    """(B, C, T, h, w): frame 0 with the image statistics, the rest with the video statistics."""
    c = cfg or VAEConfig()
    return torch.cat([(z[:, :, :1] - c.image_shift) * c.image_scale, (z[:, :, 1:] - c.video_shift) * c.video_scale],
                     dim=2)


def denormalize_latent(z: Tensor, cfg: VAEConfig | None = None) -> Tensor:
    c = cfg or VAEConfig()
    return torch.cat([z[:, :, :1] / c.image_scale + c.image_shift, z[:, :, 1:] / c.video_scale + c.video_shift],
                     dim=2)
