"""One config for the four architectures (attention / mamba / m4v / parallel), with paper and tiny presets."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

MIXERS = ("attention", "mamba", "m4v", "parallel")
TEMPORAL_VARIANTS = ("tiles", "tiles-out", "tiles-self", "tiles-shared-kv", "paper", "pooled")
HISTORY_ROPE = ("interpolate", "linspace")
POOLED_TEXT_FEATURES = ("text_embeds", "pooler_output")
NULL_CONDITIONS = ("empty_prompt", "zeros")
# Values a saved config.json that predates a field loads with: what the code did before the field existed, so
# the shipped models (m4v-tiny, m4v-tiny-reward, dit-tiny) load and sample exactly as they were trained.
LEGACY_DEFAULTS = {"temporal_variant": "pooled", "history_rope": "linspace", "null_condition": "zeros"}


@dataclass(frozen=True)
class M4VConfig:
    """Backbone hyper-parameters (spec §1.2) and the MM-DiM ablation switches (spec §1.3-1.5, Table 3)."""

    # Backbone (PyramidFlow-miniFLUX).
    hidden_size: int = 1920
    num_heads: int = 30
    num_dual_layers: int = 8           # MM-DiT blocks (joint attention, separate text/video weights)
    num_single_layers: int = 16        # single-stream blocks; their mixer is `mixer`
    mlp_ratio: float = 4.0
    patch_size: int = 2
    latent_channels: int = 16
    text_dim: int = 4096               # T5-XXL features
    text_len: int = 128
    pooled_text_dim: int = 768         # pooled CLIP-L
    # Which CLIP output is the pooled feature (m4v/text_encoders.py): "text_embeds" (projected, the project's
    # models) or "pooler_output" (PyramidFlow-miniFLUX, set by m4v/convert.py).
    pooled_text_feature: str = "text_embeds"
    rope_axes: tuple = (16, 24, 24)    # (t, h, w) split of the head dim
    rope_theta: float = 10000.0
    n_pyramid_levels: int = 3          # pyramid resolutions; one register type per level

    # Single-stream mixer.
    mixer: str = "m4v"                 # attention | mamba (pure MM-DiM) | m4v (MM-DiM + temporal) | parallel

    # Mamba (spec §6.4 defaults: Mamba-1, ZigMa / mamba-ssm values).
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int = 0                   # 0 = ceil(hidden_size / 16)
    mamba_out_proj: bool = False       # False: d_inner goes straight into proj_out's concat (spec §1.3)

    # MM-DiM parts (each one switch, so Table 3 rows are configs).
    text_recomposition: bool = True
    registers: bool = True
    zigzag: bool = True
    n_zigzag_paths: int = 8

    # Temporal branch (spec §1.5; m4v/temporal.py lists the readings, docs/paper-readings.md counts them):
    # "tiles" = history pooled to the lowest pyramid grid gives keys and values, the current frame cut into tiles
    # of that grid queries them, only the current frame receives (fits Table 4). "paper" = every token queries
    # (the shipped models up to issue 31), "pooled" = the first implementation (the 9,000-step models).
    temporal_variant: str = "tiles"
    # RoPE (h, w) positions of lower-resolution history frames on the current grid: "interpolate" as
    # PyramidFlow (F.interpolate of arange, linear, align_corners=False), "linspace" the first implementation.
    history_rope: str = "interpolate"
    # CFG's unconditional input, in training (caption dropout) and sampling: the encoders' features of the empty
    # prompt (PyramidFlow) or zero features with one valid token (the first implementation).
    null_condition: str = "empty_prompt"

    scan_backend: str = "auto"

    def __post_init__(self):
        if self.mixer not in MIXERS:
            raise ValueError(f"M4VConfig.mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        for name, allowed in (("temporal_variant", TEMPORAL_VARIANTS), ("history_rope", HISTORY_ROPE),
                              ("null_condition", NULL_CONDITIONS), ("pooled_text_feature", POOLED_TEXT_FEATURES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"M4VConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if sum(self.rope_axes) != self.head_dim:
            raise ValueError(f"rope_axes {self.rope_axes} must sum to head_dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def d_inner(self) -> int:
        return self.expand * self.hidden_size

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.hidden_size / 16)

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def uses_mamba(self) -> bool:
        return self.mixer in ("mamba", "m4v", "parallel")

    @property
    def uses_attention_mixer(self) -> bool:
        return self.mixer in ("attention", "parallel")

    @property
    def temporal_branch(self) -> bool:
        return self.mixer == "m4v"

    @property
    def patch_channels(self) -> int:
        return self.latent_channels * self.patch_size**2

    # ---- presets -------------------------------------------------------------------------------------------
    @classmethod
    def paper(cls, **overrides) -> M4VConfig:
        """Paper size: D=1920, 30x64 heads, 8 MM-DiT + 16 single-stream blocks (spec §1.2)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> M4VConfig:
        """Tiny size for CPU training and tests: same structure, small widths."""
        base = dict(hidden_size=64, num_heads=4, num_dual_layers=2, num_single_layers=4, latent_channels=4,
                    text_dim=32, text_len=8, pooled_text_dim=16, rope_axes=(4, 6, 6), d_state=8)
        return cls(**{**base, **overrides})

    # ---- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> M4VConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"M4VConfig: unknown keys {sorted(unknown)}")
        data = {**LEGACY_DEFAULTS, **data}  # a config saved before these fields existed keeps its behaviour
        if "rope_axes" in data:
            data["rope_axes"] = tuple(data["rope_axes"])
        return cls(**data)


# Table 4's four architectures as config names (variant -> mixer).
TABLE4_VARIANTS = {"full_attn": "attention", "parallel": "parallel", "pure_mamba": "mamba", "m4v": "m4v"}
