"""The pyramidal-flow video transformer: 8 MM-DiT blocks then 16 single-stream blocks (attention / MM-DiM)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from m4v.blocks import DualStreamBlock, SingleStreamBlock, build_stage_layout
from m4v.checkpoint import load_weights, save_weights
from m4v.config import M4VConfig
from m4v.layers import AdaLNModulation, ConditionEmbedding, layer_norm, modulate
from m4v.mamba import MambaMixer


def patchify(latent: Tensor, p: int) -> Tensor:
    """(B, C, h, w) -> (B, (h/p)(w/p), C p p), raster order over the token grid."""
    B, C, h, w = latent.shape
    x = latent.reshape(B, C, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (h // p) * (w // p), C * p * p)


def unpatchify(tokens: Tensor, p: int, h: int, w: int, channels: int) -> Tensor:
    """Inverse of patchify: (B, (h/p)(w/p), C p p) -> (B, C, h, w)."""
    B = tokens.shape[0]
    x = tokens.reshape(B, h // p, w // p, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, channels, h, w)


class M4VTransformer(nn.Module):
    """Predicts the flow velocity of the current (last) frame from [history frames ; current frame] + text."""

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = False   # a way to train (train --grad-checkpoint), not part of the model
        D = cfg.hidden_size
        self.x_embedder = nn.Linear(cfg.patch_channels, D)
        self.context_embedder = nn.Linear(cfg.text_dim, D)
        self.condition = ConditionEmbedding(D, cfg.pooled_text_dim)
        self.dual_blocks = nn.ModuleList(DualStreamBlock(cfg) for _ in range(cfg.num_dual_layers))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(cfg, i) for i in range(cfg.num_single_layers))
        # Per-frame registers: one learnable token type per pyramid resolution (spec §1.4).
        self.registers = (nn.Parameter(torch.zeros(cfg.n_pyramid_levels, D))
                          if cfg.uses_mamba and cfg.registers else None)
        self.norm_out = AdaLNModulation(D, 2)  # scale, shift (AdaLayerNormContinuous order)
        self.proj_out = nn.Linear(D, cfg.patch_channels)

    # ---- weights -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def initialize_weights(self) -> None:
        """Xavier linears with zero bias, adaLN-Zero (zero modulation), zero output layer, Mamba's own init."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, AdaLNModulation):
                nn.init.zeros_(module.linear.weight)
                nn.init.zeros_(module.linear.bias)
            elif isinstance(module, MambaMixer):
                nn.init.kaiming_uniform_(module.conv1d.weight, a=5**0.5)
                module.reset_parameters()
            elif hasattr(module, "zero_init"):
                module.zero_init()
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        if self.registers is not None:
            nn.init.normal_(self.registers, std=0.02)

    # ---- forward -------------------------------------------------------------------------------------------
    def forward(self, frames: list, frame_levels: list, text: Tensor, text_mask: Tensor, pooled: Tensor,
                timestep: Tensor) -> Tensor:
        """frames: [(B, C, h, w)] oldest -> current latent; text (B, Lt, text_dim); -> velocity (B, C, H, W)."""
        p = self.cfg.patch_size
        if len(frames) != len(frame_levels):
            raise ValueError(f"got {len(frames)} frames but {len(frame_levels)} frame levels")
        for i, f in enumerate(frames):
            if f.dim() != 4 or f.shape[-2] % p or f.shape[-1] % p or f.shape[1] != self.cfg.latent_channels:
                raise ValueError(f"frame {i}: expected (B, {self.cfg.latent_channels}, h, w) with h, w divisible "
                                 f"by the patch size {p}, got {tuple(f.shape)}")
        # Python ints, not traced sizes: fvcore's JIT trace would record every index computation on them.
        frame_sizes = [(int(f.shape[-2]) // p, int(f.shape[-1]) // p) for f in frames]
        video = self.x_embedder(torch.cat([patchify(f, p) for f in frames], dim=1))  # (B, Lv, D)
        text_tokens = self.context_embedder(text)                              # (B, Lt, D)
        temb = self.condition(timestep, pooled)                                # (B, D)
        layout = build_stage_layout(self.cfg, frame_sizes, frame_levels, text_mask.bool())

        # --grad-checkpoint: each block's activations recomputed in the backward rather than kept
        run = (partial(checkpoint, use_reentrant=False) if self.gradient_checkpointing and self.training
               else lambda block, *args: block(*args))
        for block in self.dual_blocks:
            video, text_tokens = run(block, video, text_tokens, temb, layout)
        x = torch.cat([text_tokens, video], dim=1)                              # (B, L, D)
        for block in self.single_blocks:
            x = run(block, x, temb, layout, self.registers)

        cur_h, cur_w = frame_sizes[-1]
        current = x[:, x.shape[1] - cur_h * cur_w:]  # (B, h w, D); positive start: JIT tracing mis-slices -n
        scale, shift = self.norm_out(temb)
        out = self.proj_out(modulate(layer_norm(current), shift, scale))       # (B, h w, C p p)
        return unpatchify(out, p, cur_h * p, cur_w * p, self.cfg.latent_channels)

    # ---- save / load ---------------------------------------------------------------------------------------
    def save_pretrained(self, directory) -> Path:
        """safetensors weights + config JSON (m4v/checkpoint.py)."""
        return save_weights(self, self.cfg.to_dict(), directory)

    @classmethod
    def from_pretrained(cls, directory, device: str = "cpu") -> M4VTransformer:
        config, state = load_weights(directory, device)
        model = cls(M4VConfig.from_dict(config))
        model.load_state_dict(state, strict=True)
        return model.to(device)


def build_model(cfg: M4VConfig, device: str = "cpu", init: bool = True) -> M4VTransformer:
    """Build (and initialise) a model; device='meta' builds a paper-size model without memory."""
    with torch.device(device):
        model = M4VTransformer(cfg)
    if init and device != "meta":
        model.initialize_weights()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
