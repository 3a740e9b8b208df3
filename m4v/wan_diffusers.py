"""`M4VWanTransformer`: the Wan model (m4v/wan.py) as a diffusers model, so a `WanPipeline` directory can hold it.

diffusers resolves a model_index.json entry ["m4v.wan_diffusers", "M4VWanTransformer"] from `sys.modules` only (it
does not import a module a repository names): import this module before `DiffusionPipeline.from_pretrained`
(benchmarks/generators/diffusers_adapter.py does it for entries of the `m4v` package).
"""

from __future__ import annotations

from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from m4v.wan import WanConfig, WanTransformer


class M4VWanTransformer(WanTransformer, ModelMixin, ConfigMixin, CacheMixin):
    """WanTransformer under diffusers' loading, saving and `WanPipeline` calling conventions."""

    config_name = "config.json"
    # `use_registers`, not `registers`: ModelMixin reads config keys as attributes, and `registers` is the parameter
    _no_split_modules = ["WanBlock"]

    @register_to_config
    def __init__(self, patch_size=(1, 2, 2), num_attention_heads: int = 12, attention_head_dim: int = 128,
                 in_channels: int = 16, out_channels: int = 16, text_dim: int = 4096, freq_dim: int = 256,
                 ffn_dim: int = 8960, num_layers: int = 30, cross_attn_norm: bool = True, eps: float = 1e-6,
                 rope_max_seq_len: int = 1024, mixer: str = "mm-dim", d_state: int = 16, expand: int = 2,
                 d_conv: int = 4, dt_rank: int = 0, zigzag: bool = True, n_zigzag_paths: int = 8,
                 use_registers: bool = True):
        WanTransformer.__init__(self, WanConfig(
            dim=num_attention_heads * attention_head_dim, ffn_dim=ffn_dim, num_heads=num_attention_heads,
            num_layers=num_layers, in_channels=in_channels, out_channels=out_channels, text_dim=text_dim,
            freq_dim=freq_dim, patch_size=tuple(patch_size), eps=eps, cross_attn_norm=cross_attn_norm,
            rope_max_seq_len=rope_max_seq_len, mixer=mixer, d_state=d_state, expand=expand, d_conv=d_conv,
            dt_rank=dt_rank, zigzag=zigzag, n_zigzag_paths=n_zigzag_paths, registers=use_registers))

    # diffusers' saving, not WanTransformer's own (config.json + model.safetensors): a pipeline folder's format
    save_pretrained = ModelMixin.save_pretrained

    @classmethod
    def from_wan_config(cls, cfg: WanConfig) -> M4VWanTransformer:
        return cls(patch_size=list(cfg.patch_size), num_attention_heads=cfg.num_heads,
                   attention_head_dim=cfg.head_dim, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                   text_dim=cfg.text_dim, freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers,
                   cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps, rope_max_seq_len=cfg.rope_max_seq_len,
                   mixer=cfg.mixer, d_state=cfg.d_state, expand=cfg.expand, d_conv=cfg.d_conv, dt_rank=cfg.dt_rank,
                   zigzag=cfg.zigzag, n_zigzag_paths=cfg.n_zigzag_paths, use_registers=cfg.registers)

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image=None,
                return_dict: bool = True, attention_kwargs=None):
        """`WanTransformer3DModel.forward`'s signature (text-to-video: no image embedding)."""
        if encoder_hidden_states_image is not None:
            raise ValueError("M4VWanTransformer is text-to-video: encoder_hidden_states_image is not supported")
        sample = WanTransformer.forward(self, hidden_states, timestep, encoder_hidden_states)
        return Transformer2DModelOutput(sample=sample) if return_dict else (sample,)
