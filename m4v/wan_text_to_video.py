"""Text -> video with a world-trained Wan model (wan-tiny, m4v-wan-tiny): text-tiny -> whole-latent flow-matching
Euler steps with CFG -> vae-tiny.

Wan2.1 is non-autoregressive and non-pyramidal (spec §1.7): every latent frame is denoised at once at full
resolution. The T5 features of text-tiny enter through cross-attention, zeroed past each prompt's length as
diffusers' WanPipeline pads them; CFG's unconditional branch reads the empty prompt's features, the null the
recipe's caption dropout trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from m4v.checkpoint import explain_load_errors, load_weights, weights_path
from m4v.pyramid import VAE_SPATIAL
from m4v.sampling import TextCondition
from m4v.text_encoders import TextEncoders
from m4v.vae import CausalVideoVAE
from m4v.wan import WanConfig, WanTransformer, build_wan
from m4v.world.dataset import to_uint8_frames

WAN_TEXT_LEN = 16        # text-tiny's caption length (m4v/recipes/text_encoders.TEXT_LEN)
WAN_STEPS = 24           # 8 + 8 + 8: as many Euler steps as the shipped pyramidal models take per latent frame
WAN_GUIDANCE = 4.0       # the shipped models' CFG scale


def is_wan_config(config: dict) -> bool:
    """A config.json of a WanTransformer (save_pretrained) rather than an M4VConfig."""
    return {"ffn_dim", "freq_dim", "num_layers"} <= set(config)


def wan_text(text: TextCondition) -> torch.Tensor:
    """T5 features with the padding zeroed (WanPipeline's prompt_embeds): (B, Lt, Dt)."""
    return text.tokens * text.mask[..., None].to(text.tokens.dtype)


def load_wan(directory) -> WanTransformer:
    """A WanTransformer from DIR/config.json + DIR/model.safetensors (one line naming the files otherwise)."""
    directory = Path(directory)
    config, state = load_weights(directory)
    with explain_load_errors(directory):
        model = build_wan(WanConfig.from_dict(config), init=False)
        model.load_state_dict(state, strict=True)
    return model.eval()


@dataclass
class WanStats:
    forwards: int = 0                                 # transformer calls (a CFG pair is one batched call)
    shapes: list = field(default_factory=list)        # per call: latent shape (B, C, F, H, W) it ran on


@torch.no_grad()
def sample_wan_latents(model: WanTransformer, text: torch.Tensor, null: torch.Tensor | None, shape: tuple,
                       steps: int, guidance: float, seed: int) -> tuple[torch.Tensor, WanStats]:
    """Rectified-flow Euler from noise (sigma 1) to data (sigma 0) over `steps` uniform sigmas, the velocity
    noise - x0 guided as v_u + g (v_c - v_u): -> latents `shape` (B, C, F, h, w) and call statistics."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    stats = WanStats()
    B = shape[0]
    for i in range(steps):
        t = torch.full((B,), float(sigmas[i]) * 1000)
        if guidance == 1.0 or null is None:
            v = model(x, t, text)
        else:
            uncond, cond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, text])).chunk(2)
            v = uncond + guidance * (cond - uncond)
        stats.forwards += 1
        stats.shapes.append((B if guidance == 1.0 or null is None else 2 * B, *shape[1:]))
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x, stats


class WanTextToVideo:
    """Frozen text-tiny, a world-trained Wan transformer and vae-tiny; `__call__` returns uint8 videos."""

    def __init__(self, model: WanTransformer, vae: CausalVideoVAE, text: TextEncoders, name: str = ""):
        self.model, self.vae, self.text, self.name = model.eval(), vae.eval(), text, name

    @classmethod
    def from_pretrained(cls, model: str, weights_root=None, vae: str = "vae-tiny",
                        text_encoder: str = "text-tiny") -> WanTextToVideo:
        model_dir = weights_path(model, weights_root)
        transformer = load_wan(model_dir)
        vae_dir, text_dir = weights_path(vae, weights_root), weights_path(text_encoder, weights_root)
        with explain_load_errors(vae_dir):
            video_vae = CausalVideoVAE.from_pretrained(vae_dir)
        with explain_load_errors(text_dir):
            text = TextEncoders.from_dir(text_dir, max_length=WAN_TEXT_LEN)
        if text.t5.config.d_model != transformer.cfg.text_dim:
            raise ValueError(f"--text-encoder {text_dir}: T5 width {text.t5.config.d_model}, but {model} reads "
                             f"{transformer.cfg.text_dim}")
        if video_vae.cfg.latent_channels != transformer.cfg.in_channels:
            raise ValueError(f"--vae {vae_dir}: {video_vae.cfg.latent_channels} latent channels, but {model} "
                             f"denoises {transformer.cfg.in_channels}")
        return cls(transformer, video_vae, text, name=str(model))

    @property
    def size_multiple(self) -> int:
        """Pixel sizes it honours: VAE 8 x the patch's spatial stride."""
        return VAE_SPATIAL * self.model.cfg.patch_size[1]

    def latent_shape(self, batch: int, frames: int, height: int, width: int) -> tuple:
        from m4v.text_to_video import latent_frames_for

        for flag, value in (("height", height), ("width", width)):
            if value < self.size_multiple or value % self.size_multiple:
                raise ValueError(f"--size: {flag} {value} is not a positive multiple of {self.size_multiple}")
        return (batch, self.model.cfg.in_channels, latent_frames_for(frames), height // VAE_SPATIAL,
                width // VAE_SPATIAL)

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (conditional, unconditional) text features (B, Lt, Dt): the prompts', the empty prompt's."""
        text = self.text.encode(prompts)
        return wan_text(text), wan_text(text.unconditional)

    @torch.no_grad()
    def __call__(self, prompts: list[str], frames: int = 16, height: int = 64, width: int = 64, seed: int = 0,
                 steps: int = WAN_STEPS, guidance: float = WAN_GUIDANCE) -> tuple[np.ndarray, WanStats, dict]:
        """-> (B, frames, H, W, 3) uint8, the sampler's call statistics, timings."""
        shape = self.latent_shape(len(prompts), frames, height, width)
        t0 = time.perf_counter()
        text, null = self.encode(prompts)
        t1 = time.perf_counter()
        latents, stats = sample_wan_latents(self.model, text, null, shape, steps, guidance, seed)
        t2 = time.perf_counter()
        video = self.vae.decode_normalized(latents)                              # (B, 3, 1 + 8k, H, W)
        t3 = time.perf_counter()
        out = np.stack([to_uint8_frames(v)[:frames] for v in video])
        return out, stats, {"text_s": t1 - t0, "denoise_s": t2 - t1, "decode_s": t3 - t2, "total_s": t3 - t0}

