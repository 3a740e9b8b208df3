"""Wan2.1 text-to-video DiT with a switchable self-attention mixer: attention (Wan2.1) or MM-DiM (M4V*(Wan2.1)).

Wan2.1 (spec §1.7): patch (1, 2, 2) over the Wan VAE's 16-channel latent, T5 text through cross-attention, adaLN
modulation from a shared time projection plus a learned per-block table, 3D RoPE. Parameter names are diffusers'
`WanTransformer3DModel`'s, so a Wan2.1 state dict loads by name both ways (m4v/wan_convert.py); the math follows
diffusers' `transformer_wan.py` (checked to float precision in tests/test_wan.py). M4V*(Wan2.1) replaces every
self-attention by MM-DiM: a bidirectional zigzag Mamba over the whole latent's tokens, one register type before
every frame; cross-attention, FFN and modulation are kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from m4v.layers import timestep_embedding
from m4v.mamba import MambaMixer
from m4v.zigzag import inverse_permutation, path_for_layer, zigzag_path

WAN_MIXERS = ("attention", "mm-dim")


@dataclass(frozen=True)
class WanConfig:
    """Wan2.1 T2V hyper-parameters (diffusers' names in comments) and the MM-DiM switches."""

    dim: int = 1536                    # num_attention_heads * attention_head_dim
    ffn_dim: int = 8960
    num_heads: int = 12                # num_attention_heads
    num_layers: int = 30
    in_channels: int = 16              # the Wan VAE's latent channels
    out_channels: int = 16
    text_dim: int = 4096               # umT5-XXL features
    freq_dim: int = 256
    patch_size: tuple = (1, 2, 2)
    eps: float = 1e-6
    cross_attn_norm: bool = True
    rope_max_seq_len: int = 1024
    rope_theta: float = 10000.0

    mixer: str = "attention"           # attention (Wan2.1) | mm-dim (M4V*(Wan2.1))
    # Mamba (as M4VConfig: Mamba-1, mamba-ssm defaults); out_proj d_inner -> dim stands where attention's to_out was.
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int = 0                   # 0 = ceil(dim / 16)
    zigzag: bool = True
    n_zigzag_paths: int = 8
    registers: bool = True
    scan_backend: str = "auto"

    def __post_init__(self):
        if self.mixer not in WAN_MIXERS:
            raise ValueError(f"WanConfig.mixer must be one of {WAN_MIXERS}, got {self.mixer!r}")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError(f"WanConfig: dim {self.dim} must split into {self.num_heads} heads of even width")
        object.__setattr__(self, "patch_size", tuple(self.patch_size))

    # MambaMixer reads these names (M4VConfig's).
    @property
    def hidden_size(self) -> int:
        return self.dim

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def d_inner(self) -> int:
        return self.expand * self.dim

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.dim / 16)

    @property
    def mamba_out_proj(self) -> bool:
        return True

    @classmethod
    def tiny(cls, **overrides) -> WanConfig:
        """CPU size for training and tests: same structure, small widths."""
        base = dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, in_channels=4, out_channels=4, text_dim=32,
                    freq_dim=32, d_state=8)
        return cls(**{**base, **overrides})

    @classmethod
    def wan_1_3b(cls, **overrides) -> WanConfig:
        """Wan2.1-T2V-1.3B (its diffusers config: 12 x 128 heads, 30 layers, ffn 8960)."""
        return cls(**overrides)

    @classmethod
    def wan_14b(cls, **overrides) -> WanConfig:
        """Wan2.1-T2V-14B (40 x 128 heads, 40 layers, ffn 13824)."""
        return cls(**{**dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40), **overrides})

    def to_dict(self) -> dict:
        return {**asdict(self), "patch_size": list(self.patch_size)}

    @classmethod
    def from_dict(cls, data: dict) -> WanConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"WanConfig: unknown keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_diffusers(cls, config: dict, **overrides) -> WanConfig:
        """From a `WanTransformer3DModel` config.json (text-to-video only: no image embedding)."""
        if config.get("image_dim") or config.get("added_kv_proj_dim"):
            raise ValueError("an image-conditioned Wan transformer (image_dim / added_kv_proj_dim set): "
                             "only text-to-video Wan2.1 is supported")
        if config.get("qk_norm", "rms_norm_across_heads") != "rms_norm_across_heads":
            raise ValueError(f"qk_norm {config['qk_norm']!r}: only rms_norm_across_heads (Wan2.1) is supported")
        heads, head_dim = config.get("num_attention_heads", 40), config.get("attention_head_dim", 128)
        keys = dict(ffn_dim="ffn_dim", num_layers="num_layers", in_channels="in_channels",
                    out_channels="out_channels", text_dim="text_dim", freq_dim="freq_dim", patch_size="patch_size",
                    eps="eps", cross_attn_norm="cross_attn_norm", rope_max_seq_len="rope_max_seq_len")
        values = {ours: config[theirs] for ours, theirs in keys.items() if config.get(theirs) is not None}
        return cls(dim=heads * head_dim, num_heads=heads, **{**values, **overrides})

    def diffusers_config(self) -> dict:
        """The `WanTransformer3DModel` config of the attention model with these sizes."""
        return dict(patch_size=list(self.patch_size), num_attention_heads=self.num_heads,
                    attention_head_dim=self.head_dim, in_channels=self.in_channels, out_channels=self.out_channels,
                    text_dim=self.text_dim, freq_dim=self.freq_dim, ffn_dim=self.ffn_dim, num_layers=self.num_layers,
                    cross_attn_norm=self.cross_attn_norm, qk_norm="rms_norm_across_heads", eps=self.eps,
                    image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=self.rope_max_seq_len,
                    pos_embed_seq_len=None)


def fp32_layer_norm(x: Tensor, eps: float, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """LayerNorm computed in float32, returned in x's dtype (diffusers' FP32LayerNorm)."""
    w, b = (None if t is None else t.float() for t in (weight, bias))
    return F.layer_norm(x.float(), x.shape[-1:], w, b, eps).to(x.dtype)


class AffineLayerNorm(nn.Module):
    """The cross-attention input norm (FP32LayerNorm with weight and bias)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return fp32_layer_norm(x, self.eps, self.weight, self.bias)


def wan_rope(frames: int, height: int, width: int, head_dim: int, theta: float, device) -> tuple[Tensor, Tensor]:
    """cos, sin (L, head_dim) of Wan's 3D RoPE over the (f, h, w) token grid, raster order, pairs interleaved:
    head_dim split t | h | w with h = w = 2 (head_dim // 6); angles in float64 as diffusers, then float32."""
    h_dim = w_dim = 2 * (head_dim // 6)
    parts = []
    for n, dim in ((frames, head_dim - h_dim - w_dim), (height, h_dim), (width, w_dim)):
        omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device)[: dim // 2] / dim)
        parts.append(torch.arange(n, dtype=torch.float64, device=device)[:, None] * omega[None])  # (n, dim/2)
    f, h, w = parts
    angles = torch.cat([f[:, None, None].expand(frames, height, width, -1),
                        h[None, :, None].expand(frames, height, width, -1),
                        w[None, None, :].expand(frames, height, width, -1)], dim=-1).reshape(-1, head_dim // 2)
    return (torch.cos(angles).float().repeat_interleave(2, dim=-1),
            torch.sin(angles).float().repeat_interleave(2, dim=-1))         # (L, hd) each


def apply_wan_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, L, H, hd); rotate interleaved pairs (2k, 2k+1); cos, sin (L, hd) repeated per pair."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)                            # (B, L, H, hd/2) each
    c, s = cos[None, :, None, 0::2], sin[None, :, None, 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)


class WanAttention(nn.Module):
    """Wan attention: q, k, v, o with bias; RMS q / k norm across all heads; optional RoPE; no mask."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])                  # diffusers' name: to_out.0
        self.norm_q, self.norm_k = nn.RMSNorm(dim, eps=eps), nn.RMSNorm(dim, eps=eps)

    def forward(self, x: Tensor, context: Tensor | None = None, rope: tuple | None = None) -> Tensor:
        """x (B, L, D), context (B, Lc, D) for cross-attention (None: self) -> (B, L, D)."""
        context = x if context is None else context
        q, k = self.norm_q(self.to_q(x)), self.norm_k(self.to_k(context))
        q, k, v = (t.unflatten(2, (self.num_heads, -1)) for t in (q, k, self.to_v(context)))  # (B, L, H, hd)
        if rope is not None:
            q, k = apply_wan_rope(q, *rope), apply_wan_rope(k, *rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.to_out[0](out.transpose(1, 2).flatten(2).type_as(q))   # (B, L, D)


class ZigzagMambaMixer(nn.Module):
    """MM-DiM over a whole video latent: frames in time order, each read along this layer's zigzag path with a
    register before it, scanned forward and backward by one Mamba (shared weights, outputs averaged)."""

    def __init__(self, cfg: WanConfig, layer_index: int):
        super().__init__()
        self.path_index = path_for_layer(layer_index, cfg.n_zigzag_paths) if cfg.zigzag else None
        self.mamba = MambaMixer(cfg)                                        # with out_proj: d_inner -> dim

    def order(self, grid: tuple, device) -> Tensor:
        """perm (F h w,): raster index of each token in scan order, frame by frame."""
        frames, h, w = grid
        per_frame = (zigzag_path(h, w, self.path_index) if self.path_index is not None
                     else torch.arange(h * w)).to(device)
        return (torch.arange(frames, device=device)[:, None] * (h * w) + per_frame[None]).reshape(-1)

    def forward(self, x: Tensor, grid: tuple, register: Tensor | None) -> Tensor:
        """x (B, F h w, D) raster order -> (B, F h w, D)."""
        B, L, D = x.shape
        frames = grid[0]
        perm = self.order(grid, x.device)
        seq = x[:, perm].view(B, frames, L // frames, D)                    # (B, F, h w, D) scan order
        if register is not None:
            seq = torch.cat([register.to(x.dtype).expand(B, frames, 1, D), seq], dim=2)  # (B, F, 1 + h w, D)
        seq = seq.reshape(B, -1, D)                                         # (B, S, D)
        valid = torch.ones(2 * B, seq.shape[1], dtype=torch.bool, device=x.device)
        both = self.mamba(torch.cat([seq, seq.flip(1)]), valid)             # (2B, S, D)
        out = 0.5 * (both[:B] + both[B:].flip(1))                           # (B, S, D)
        out = out.view(B, frames, -1, D)[:, :, int(register is not None):].reshape(B, L, D)
        return out[:, inverse_permutation(perm)]                            # (B, L, D) raster order


class FeedForward(nn.Module):
    """Linear -> tanh-GELU -> Linear under diffusers' names (net.0.proj, net.2)."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleDict({"0": nn.ModuleDict({"proj": nn.Linear(dim, inner)}), "2": nn.Linear(inner, dim)})

    def forward(self, x: Tensor) -> Tensor:
        return self.net["2"](F.gelu(self.net["0"]["proj"](x), approximate="tanh"))


class WanBlock(nn.Module):
    """Self-mixer (attention or MM-DiM), cross-attention to text, FFN; adaLN from temb + scale_shift_table."""

    def __init__(self, cfg: WanConfig, layer_index: int):
        super().__init__()
        D = cfg.dim
        self.eps = cfg.eps
        self.attn1 = WanAttention(D, cfg.num_heads, cfg.eps) if cfg.mixer == "attention" else None
        self.mmdim = ZigzagMambaMixer(cfg, layer_index) if cfg.mixer == "mm-dim" else None
        self.attn2 = WanAttention(D, cfg.num_heads, cfg.eps)
        self.norm2 = AffineLayerNorm(D, cfg.eps) if cfg.cross_attn_norm else None
        self.ffn = FeedForward(D, cfg.ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, D) / D**0.5)

    def forward(self, x: Tensor, text: Tensor, temb6: Tensor, rope: tuple, grid: tuple,
                register: Tensor | None) -> Tensor:
        """x (B, L, D), text (B, Lt, D), temb6 (B, 6, D) -> (B, L, D)."""
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + temb6.float()).chunk(6, dim=1)
        h = (fp32_layer_norm(x.float(), self.eps) * (1 + scale) + shift).type_as(x)
        mixed = self.attn1(h, rope=rope) if self.attn1 is not None else self.mmdim(h, grid, register)
        x = (x.float() + mixed * gate).type_as(x)
        h = self.norm2(x.float()).type_as(x) if self.norm2 is not None else x
        x = x + self.attn2(h, context=text)
        h = (fp32_layer_norm(x.float(), self.eps) * (1 + c_scale) + c_shift).type_as(x)
        return (x.float() + self.ffn(h).float() * c_gate).type_as(x)


class WanTransformer(nn.Module):
    """Latent (B, C, F, H, W), timestep (B,), T5 features (B, Lt, text_dim) -> velocity (B, C, F, H, W)."""

    def __init__(self, cfg: WanConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels, D, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.condition_embedder = nn.ModuleDict({
            "time_embedder": nn.ModuleDict({"linear_1": nn.Linear(cfg.freq_dim, D), "linear_2": nn.Linear(D, D)}),
            "time_proj": nn.Linear(D, 6 * D),
            "text_embedder": nn.ModuleDict({"linear_1": nn.Linear(cfg.text_dim, D), "linear_2": nn.Linear(D, D)}),
        })
        self.blocks = nn.ModuleList(WanBlock(cfg, i) for i in range(cfg.num_layers))
        self.proj_out = nn.Linear(D, cfg.out_channels * math.prod(cfg.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, D) / D**0.5)
        # One register type (a single resolution), shared by every frame and layer (spec §1.4 with one level).
        self.registers = (nn.Parameter(torch.zeros(1, D)) if cfg.mixer == "mm-dim" and cfg.registers else None)

    def initialize_weights(self) -> None:
        """Wan's init (xavier linears and patch embedding, zero biases, N(0, 0.02) embedders, zero output layer);
        Mamba's own init; registers N(0, 0.02)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, MambaMixer):
                nn.init.kaiming_uniform_(module.conv1d.weight, a=5**0.5)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for group in ("time_embedder", "text_embedder"):
            for linear in self.condition_embedder[group].values():
                nn.init.normal_(linear.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, MambaMixer):
                module.reset_parameters()
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        if self.registers is not None:
            nn.init.normal_(self.registers, std=0.02)

    def embed_condition(self, timestep: Tensor, text: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> temb (B, D), temb6 (B, 6, D), text tokens (B, Lt, D) (diffusers' WanTimeTextImageEmbedding)."""
        emb = self.condition_embedder
        t = timestep_embedding(timestep, self.cfg.freq_dim).to(emb["time_embedder"]["linear_1"].weight.dtype)
        temb = emb["time_embedder"]["linear_2"](F.silu(emb["time_embedder"]["linear_1"](t))).type_as(text)
        temb6 = emb["time_proj"](F.silu(temb)).unflatten(1, (6, -1))            # (B, 6, D)
        text = emb["text_embedder"]["linear_2"](F.gelu(emb["text_embedder"]["linear_1"](text), approximate="tanh"))
        return temb, temb6, text

    def forward(self, latent: Tensor, timestep: Tensor, text: Tensor) -> Tensor:
        B, _, frames, height, width = latent.shape
        pt, ph, pw = self.cfg.patch_size
        grid = (frames // pt, height // ph, width // pw)
        rope = wan_rope(*grid, self.cfg.head_dim, self.cfg.rope_theta, latent.device)
        x = self.patch_embedding(latent).flatten(2).transpose(1, 2).contiguous()   # (B, L, D)
        temb, temb6, text = self.embed_condition(timestep, text)
        for block in self.blocks:
            x = block(x, text, temb6, rope, grid, self.registers)
        shift, scale = (self.scale_shift_table + temb[:, None]).chunk(2, dim=1)   # (B, 1, D) each
        x = (fp32_layer_norm(x.float(), self.cfg.eps) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)                                                       # (B, L, pt ph pw C)
        x = x.reshape(B, *grid, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)                         # (B, C, F, H, W)

    def save_pretrained(self, directory) -> Path:
        """config.json (WanConfig) + model.safetensors."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        return directory


def build_wan(cfg: WanConfig, device: str = "cpu", init: bool = True) -> WanTransformer:
    """Build (and initialise) a Wan model; device='meta' builds a published size without memory."""
    with torch.device(device):
        model = WanTransformer(cfg)
    if init and device != "meta":
        model.initialize_weights()
    return model
