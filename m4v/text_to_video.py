"""Text -> video with trained models: text encoders -> pyramidal AR flow sampling (m4v/sampling.py) -> VAE.

`TextToVideo.from_pretrained("m4v-tiny")` loads the shipped tiny models (m4v/weights/); any directory saved by
`m4v-bench train` works the same way. Nothing is downloaded.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from m4v.checkpoint import explain_load_errors, weights_path
from m4v.pyramid import N_LEVELS, VAE_SPATIAL, VAE_TEMPORAL, size_multiple
from m4v.sampling import GenerationConfig, GenerationStats, SamplingDefaults, generate_latents
from m4v.text_encoders import TextEncoders
from m4v.transformer import M4VTransformer
from m4v.vae import CausalVideoVAE
from m4v.world.dataset import to_uint8_frames

# Sampling defaults of the tiny models (fewer steps than PyramidFlow's 20/10 per stage: the tiny flows are short).
TINY_STEPS = (8, 8, 8)
TINY_GUIDANCE = 4.0


def latent_frames_for(frames: int) -> int:
    """Latent frames whose decoding covers `frames` pixel frames (1 + 8k pixel frames per 1 + k latents)."""
    if frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    return 1 + -(-(frames - 1) // VAE_TEMPORAL)


class TextToVideo:
    """Frozen text encoders, transformer and VAE; `__call__` returns uint8 videos."""

    def __init__(self, model: M4VTransformer, vae: CausalVideoVAE, text: TextEncoders, name: str = "",
                 defaults: SamplingDefaults | None = None):
        self.model, self.vae, self.text, self.name = model.eval(), vae.eval(), text, name
        self.defaults = defaults or SamplingDefaults()

    @classmethod
    def from_pretrained(cls, model: str, weights_root=None, vae: str = "vae-tiny",
                        text_encoder: str = "text-tiny") -> TextToVideo:
        """MODEL is a name under the weights root (m4v-tiny, dit-tiny, m4v-tiny-reward) or a directory."""
        model_dir = weights_path(model, weights_root)
        with explain_load_errors(model_dir):
            transformer = M4VTransformer.from_pretrained(model_dir)
        defaults = SamplingDefaults.read(model_dir)
        vae_dir, text_dir = weights_path(vae, weights_root), weights_path(text_encoder, weights_root)
        with explain_load_errors(vae_dir):
            video_vae = CausalVideoVAE.from_pretrained(vae_dir)
        with explain_load_errors(text_dir):
            text = TextEncoders.from_dir(text_dir, max_length=transformer.cfg.text_len,
                                         pooled=transformer.cfg.pooled_text_feature)
        cfg = transformer.cfg
        # Checked here so a mismatched pair fails with the directories' names, not a matmul shape error mid-sampling.
        if (text.t5.config.d_model, text.pooled_width) != (cfg.text_dim, cfg.pooled_text_dim):
            raise ValueError(f"--text-encoder {text_dir}: T5 width {text.t5.config.d_model} / pooled width "
                             f"{text.pooled_width} ({cfg.pooled_text_feature}), but {model} reads {cfg.text_dim} / "
                             f"{cfg.pooled_text_dim}")
        if video_vae.cfg.latent_channels != cfg.latent_channels:
            raise ValueError(f"--vae {vae_dir}: {video_vae.cfg.latent_channels} latent channels, but {model} "
                             f"denoises {cfg.latent_channels}")
        return cls(transformer, video_vae, text, name=str(model), defaults=defaults)

    @property
    def size_multiple(self) -> int:
        """Pixel sizes the model can honour are multiples of this: VAE 8 x pyramid 2^(levels-1) x patch (a
        denoiser without patches, e.g. a test's oracle, has patch 1)."""
        return size_multiple(self.patch_size)

    @property
    def patch_size(self) -> int:
        return getattr(self.model.cfg, "patch_size", 1)

    def check_request(self, frames: int, height: int, width: int, steps, guidance: float) -> None:
        """Refuse, before any work, what the model cannot honour (the error names the CLI flag)."""
        if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
            raise ValueError(f"--frames must be an integer >= 1, got {frames!r}")
        for flag, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < self.size_multiple \
                    or value % self.size_multiple:
                raise ValueError(f"--size: {flag} {value!r} is not a positive multiple of {self.size_multiple} "
                                 f"(VAE {VAE_SPATIAL} x pyramid {2 ** (N_LEVELS - 1)} x patch {self.patch_size})")
        steps = list(steps)
        if len(steps) != N_LEVELS or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                                          for n in steps):
            raise ValueError(f"--steps must be {N_LEVELS} integers >= 1 (one per pyramid stage), got {steps}")
        if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"--guidance must be a finite number >= 0, got {guidance!r}")

    def describe_prompt(self, prompt: str) -> dict:
        """What the text encoders make of `prompt`: its tokens against each encoder's limit (longer prompts are
        cut there) and the words the tokenizer does not know (read as <unk>)."""
        report = {}
        for name, tokenizer, limit in (("t5", self.text.t5_tokenizer, self.text.max_length),
                                       ("clip", self.text.clip_tokenizer,
                                        self.text.clip.config.max_position_embeddings)):
            ids = tokenizer(prompt, truncation=False, verbose=False)["input_ids"]
            unk = tokenizer.unk_token_id
            report[name] = {"tokens": len(ids), "max_tokens": limit, "truncated": len(ids) > limit,
                            "unknown_tokens": sum(i == unk for i in ids) if unk is not None else 0}
        return report

    def config(self, frames: int, height: int, width: int, seed: int, steps=TINY_STEPS,
               guidance: float = TINY_GUIDANCE) -> GenerationConfig:
        self.check_request(frames, height, width, steps, guidance)
        return GenerationConfig(latent_frames=latent_frames_for(frames), latent_height=height // VAE_SPATIAL,
                                latent_width=width // VAE_SPATIAL, first_frame_steps=tuple(steps),
                                video_steps=tuple(steps), guidance_scale=guidance, video_guidance_scale=guidance,
                                seed=seed, stage_end=self.defaults.stage_end)

    @torch.no_grad()
    def __call__(self, prompts: list[str], frames: int = 16, height: int = 64, width: int = 64, seed: int = 0,
                 steps=TINY_STEPS, guidance: float = TINY_GUIDANCE, progress: bool = False,
                 negative_prompt: str | None = None) -> tuple[np.ndarray, GenerationStats, dict]:
        """-> (B, frames, H, W, 3) uint8, the sampler's call statistics, and timings. `negative_prompt`: CFG's
        unconditional branch reads its features (PyramidFlow's option); default: the checkpoint's sampling
        defaults (sampling.json), else the model's null condition. The defaults' prompt suffix is appended."""
        cfg = self.config(frames, height, width, seed, steps, guidance)
        negative_prompt = self.defaults.negative_prompt if negative_prompt is None else negative_prompt
        prompts = [p + self.defaults.prompt_suffix for p in prompts]
        t0 = time.perf_counter()
        text = self.text.encode(prompts)
        null = None if negative_prompt is None else self.text.encode([negative_prompt] * len(prompts), False)
        t1 = time.perf_counter()
        latents, stats = generate_latents(self.model, text, cfg, progress=progress, null=null)  # (B, C, T, h, w)
        t2 = time.perf_counter()
        video = self.vae.decode_normalized(latents)                              # (B, 3, 1 + 8k, H, W)
        t3 = time.perf_counter()
        out = np.stack([to_uint8_frames(v)[:frames] for v in video])
        timing = {"text_s": t1 - t0, "denoise_s": t2 - t1, "decode_s": t3 - t2, "total_s": t3 - t0}
        return out, stats, timing
