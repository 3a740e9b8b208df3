"""ViCLIP (InternVid's video CLIP), the model of VBench's temporal_style and overall_consistency, as VBench runs it.

VBench (vbench/temporal_style.py, overall_consistency.py) reads 8 "middle" frames with decord as uint8
(`read_frames_decord_by_fps(num_frames=8, sample="middle")`), applies `clip_transform(224)` to that uint8 tensor
(so torchvision rounds and clamps the bicubic resize to uint8 before /255), encodes the (1, 8, 3, 224, 224) clip
with `ViCLIP.encode_vision(test=True)` and the prompt with `encode_text`, and scores the raw cosine.

VBench's copy of the model (vbench/third_party/ViCLIP) cannot be imported as a library: importing it needs decord
(`vbench/utils.py`), `pkg_resources` (gone from current setuptools) and downloads its BPE file with wget at import
time. So the two encoders are transcribed here, with VBench's parameter names (its checkpoint
`ViClip-InternVid-10M-FLT.pth`, `{"model": state_dict}`, loads strictly as VBench loads it) and open_clip's CLIP
residual blocks (the same modules and parameter names as VBench's, run sequence-first as VBench does). Only the
video encoder's patch / position / temporal-embedding steps, which no library has, are written out.
tests/test_vbench_viclip.py checks them against VBench's own classes and its temporal_style function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluators.backbone_loading import CLIP_MEAN, CLIP_STD, BackboneSpec, load_state_file
from evaluators.video import middle_frame_indices

N_FRAMES = 8        # VBench: read_frames_decord_by_fps(num_frames=8, sample="middle")
IMAGE_SIZE = 224    # VBench: clip_transform(224)


@dataclass(frozen=True)
class ViCLIPConfig:
    """ViCLIP's sizes; the defaults are VBench's ViCLIP (vision clip_joint_l14, text clip_text_l14, 32 tokens)."""

    image_size: int = 224
    patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    num_frames: int = 8
    embed_dim: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 32
    vocab_size: int = 49408


VICLIP_CONFIGS = {"ViCLIP-L-14": ViCLIPConfig()}


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation of ViCLIP's (OpenAI-style) blocks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _blocks(width: int, layers: int, heads: int, norm_layer) -> nn.Module:
    """open_clip's CLIP blocks, sequence-first like VBench's (ln_1, attn, ln_2, mlp.c_fc / c_proj)."""
    from open_clip.transformer import Transformer

    return Transformer(width, layers, heads, act_layer=QuickGELU, norm_layer=norm_layer, batch_first=False)


class ViCLIPVision(nn.Module):
    """VBench's ViCLIP VisionTransformer: frame-wise patches (Conv3d, kernel 1 in time), the spatial table, a
    temporal table per patch, joint space-time attention with one class token, its projected output."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        width, patch = cfg.vision_width, cfg.patch_size
        self.conv1 = nn.Conv3d(3, width, (1, patch, patch), (1, patch, patch), (0, 0, 0), bias=False)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((cfg.image_size // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, cfg.num_frames, width))
        self.transformer = _blocks(width, cfg.vision_layers, cfg.vision_heads, nn.LayerNorm)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, cfg.embed_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, 3, T, H, W), normalised -> (B, embed_dim)."""
        x = self.conv1(video)                                                       # (B, C, T, h, w)
        batch, width, frames, grid_h, grid_w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(batch * frames, grid_h * grid_w, width)  # (B T, N, C)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, width, dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding                  # (B T, 1 + N, C)
        cls_tokens, x = x[:batch, :1], x[:, 1:]    # VBench keeps one class token per video (all rows are equal)
        x = x.reshape(batch, frames, -1, width).transpose(1, 2)                     # (B, N, T, C)
        # VBench adds the table's mean over time when a clip has a single frame
        table = self.temporal_positional_embedding.mean(1) if frames == 1 else self.temporal_positional_embedding
        x = (x + table).reshape(batch, -1, width)                                    # (B, N T, C), patch-major
        x = self.ln_pre(torch.cat([cls_tokens, x], dim=1))
        x = self.ln_post(self.transformer(x))                                       # (B, 1 + N T, C)
        return x[:, 0] @ self.proj


class ViCLIPText(nn.Module):
    """VBench's ViCLIP CLIP_TEXT: OpenAI's CLIP text tower with a 32-token context (causal mask, EOT pooling)."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        from open_clip.transformer import LayerNorm  # casts to float32 as VBench's text LayerNorm does

        width = cfg.text_width
        self.transformer = _blocks(width, cfg.text_layers, cfg.text_heads, LayerNorm)
        self.token_embedding = nn.Embedding(cfg.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, width).normal_(std=0.01))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, cfg.embed_dim).normal_(std=width**-0.5))
        mask = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) -> (B, embed_dim), read at each sequence's end-of-text token (its highest id)."""
        x = self.token_embedding(tokens) + self.positional_embedding                 # (B, L, D)
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


class ViCLIP(nn.Module):
    """The two encoders under VBench's names (vision_encoder, text_encoder, temp), so its checkpoint loads."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.vision_encoder = ViCLIPVision(cfg)
        self.text_encoder = ViCLIPText(cfg)
        self.temp = nn.Parameter(torch.ones([]) / 100.0)   # training temperature, in the checkpoint, unused here


def viclip_tokenizer(context_length: int):
    """OpenAI's CLIP BPE (open_clip's copy of the file VBench's ViCLIP reads), truncated to `context_length`
    with the end token kept, as ViCLIP's CLIP_TEXT.tokenize(truncate=True) does."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def viclip_preprocess(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, 8, 224, 224): VBench's 8 middle frames through clip_transform(224) on the uint8
    tensor decord's torch bridge returns (the resize rounds and clamps to uint8, as VBench's does)."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Lambda, Normalize, Resize

    # vbench.utils.clip_transform(224), composed as evaluators.backbones.clip_transform is (the backbone modules
    # do not import evaluators.backbones, which imports them)
    transform = Compose([Resize(IMAGE_SIZE, interpolation=InterpolationMode.BICUBIC, antialias=False),
                         CenterCrop(IMAGE_SIZE), Lambda(lambda x: x.float().div(255.0)),
                         Normalize(CLIP_MEAN, CLIP_STD)])
    picked = np.ascontiguousarray(frames[middle_frame_indices(len(frames), N_FRAMES)])
    clip = transform(torch.from_numpy(picked).permute(0, 3, 1, 2))                 # (8, 3, 224, 224)
    return clip.permute(1, 0, 2, 3)[None]                                            # (1, 3, 8, 224, 224)


def load_viclip(spec: BackboneSpec, device: str = "cpu") -> ViCLIP:
    """ViCLIP from VBench's checkpoint layout ({"model": state_dict}, or the state dict alone), loaded strictly."""
    if spec.model not in VICLIP_CONFIGS:
        raise ValueError(f"--backbone viclip={spec.model}: unknown ViCLIP model; known: {sorted(VICLIP_CONFIGS)}")
    model = ViCLIP(VICLIP_CONFIGS[spec.model])
    state = load_state_file(spec.weights)
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{spec.weights}: not a ViCLIP checkpoint (a state dict, or one under 'model')")
    model.load_state_dict(state)   # strict, as VBench's ViCLIP loads its file
    return model.to(device).eval()


class ViclipBackbone:
    """`--backbone viclip=ViCLIP-L-14:PATH`: unit video and text embeddings as VBench computes them."""

    def __init__(self, spec: BackboneSpec, device: str = "cpu"):
        self.spec, self.device = spec, device
        self.model = load_viclip(spec, device)
        self.tokenizer = viclip_tokenizer(self.model.cfg.context_length)
        self.text_memo = {}

    @torch.no_grad()
    def encode_video(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (1, E) unit vector of its 8 middle frames."""
        clip = viclip_preprocess(frames).to(self.device)
        return F.normalize(self.model.vision_encoder(clip).float(), dim=-1).cpu()

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """(N,) strings -> (N, E) unit vectors (memoised per string)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self.text_memo]
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            for prompt, emb in zip(missing, F.normalize(self.model.text_encoder(tokens).float(), dim=-1).cpu()):
                self.text_memo[prompt] = emb
        return torch.stack([self.text_memo[p] for p in prompts])
