"""wan-tiny / m4v-wan-tiny: the toy-scale Wan2.1 and M4V*(Wan2.1) (issue 38 item 4) trained on world videos.

wan-tiny is the Wan2.1 architecture (m4v/wan.py, attention self-mixer) trained from scratch; m4v-wan-tiny starts
from it with every self-attention replaced by MM-DiM (Mamba at its own init: `init_mamba` "default", the project's
measured default; every other weight copied) and is fine-tuned the same way. Both see the denoisers' data
(m4v/recipes/denoiser.py: the world clips through the frozen vae-tiny, captions through the frozen text-tiny, 10%
of captions dropped to the empty prompt so CFG works) and learn whole-latent flow matching (spec §1.7: the loss
on the whole video latent, no pyramid, no autoregression; m4v/recipes/wan.flow_matching_loss). The shipped
weights are an EMA of the trained ones, as the other denoisers'. `--data CAPTIONS` trains on the user's clips
(encoded as the denoisers' are); under torchrun every rank draws the whole batch and computes its rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from m4v.recipes import BaseRecipe, step_generator, weights_path
from m4v.recipes.denoiser import EMA_DECAY, FrozenWorldEncoders, drop_captions, optimise_with_ema, training_latents
from m4v.recipes.wan import flow_matching_loss
from m4v.sampling import TextCondition
from m4v.wan import WanConfig, build_wan
from m4v.wan_text_to_video import load_wan, wan_text

MIXER = {"wan-tiny": "attention", "m4v-wan-tiny": "mm-dim"}
BASE_MODEL = "wan-tiny"   # what m4v-wan-tiny starts from unless --init-from says otherwise


def wan_tiny_config(name: str, **overrides) -> WanConfig:
    """dit-tiny's width and depth (120 wide, 4 heads, 6 blocks, MLP x4) in Wan2.1's structure; vae-tiny's 16
    latent channels, text-tiny's 32-wide T5 features."""
    base = dict(dim=120, ffn_dim=480, num_heads=4, num_layers=6, in_channels=16, out_channels=16, text_dim=32,
                freq_dim=64, d_state=8, mixer=MIXER[name])
    return WanConfig.tiny(**{**base, **overrides})


class Recipe(BaseRecipe):
    default_steps = 3000

    def __init__(self, name, seed=0, weights_root=None, batch: int = 32, lr: float = 1e-3,
                 dataset_size: int = 4096, init_from: str | None = None, init_mamba: str = "default",
                 data: str | None = None):
        if name not in MIXER:
            raise ValueError(f"--model: {name!r} is not a Wan recipe ({', '.join(MIXER)})")
        if name == "m4v-wan-tiny" and init_from is None:
            init_from = str(weights_path(BASE_MODEL, weights_root))
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, dataset_size=dataset_size,
                         init_from=None if init_from is None else str(init_from),
                         init_mamba=init_mamba if init_from is not None else None,
                         **({} if data is None else {"data": str(Path(data).resolve())}))
        self.clips = None   # the user's videos (`--data`), read now: an empty captions file is refused at once
        if data is not None:
            from m4v.captioned_videos import read_captions

            self.clips = read_captions(data)
        torch.manual_seed(seed)
        self.model = build_wan(wan_tiny_config(name))
        self.init_report = None
        if init_from is not None:
            from m4v.wan_convert import load_wan_state

            source = load_wan(weights_path(str(init_from), weights_root)).state_dict()
            report = load_wan_state(self.model, source, init_mamba)
            self.init_report = {k: v if isinstance(v, dict) else len(v) for k, v in report.items()}
            self.init_report["init_mamba"] = init_mamba
        self.encoders = FrozenWorldEncoders(weights_root)
        self.null = self.encoders.text.encode([""], unconditional=False)   # caption dropout's null: the empty prompt
        self.dataset = None   # the denoisers' latent cache beside the run directory (same seed and size, or clips)
        self.ema = build_wan(self.model.cfg, init=False).requires_grad_(False)
        self.ema.load_state_dict(self.model.state_dict())
        self.modules = {"model": self.model, "ema": self.ema}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-4,
                                           fused=True)

    def config(self) -> dict:
        return {**self.options, "ema_decay": EMA_DECAY, "model": self.model.cfg.to_dict(),
                **({"init_report": self.init_report} if self.init_report else {})}

    def step(self, i: int) -> dict:
        if self.dataset is None:
            self.dataset = self.rank_zero_first(lambda: training_latents(
                self.encoders, self.seed, self.options["dataset_size"], self.out.parent, self.clips, self.rank > 0))
        generator = step_generator(self.seed, i)
        latents, text, _ = self.dataset.batch(generator, self.options["batch"])      # (B, C, F, h, w)
        B = len(text.tokens)
        null = TextCondition(self.null.tokens.expand(B, -1, -1), self.null.mask.expand(B, -1),
                             self.null.pooled.expand(B, -1))
        text = drop_captions(text, generator, null=null)   # drawn for the whole batch, as every draw of the step
        self.model.train()
        self.set_lr(i)
        loss = flow_matching_loss(self.model, latents, wan_text(text), generator, rows=self.my_rows(B))
        optimise_with_ema(self, loss, i)
        return {"loss": loss.item()}

    def save(self, out) -> None:
        self.ema.save_pretrained(out)
        if self.init_report is not None:
            (Path(out) / "init_report.json").write_text(json.dumps(self.init_report, indent=2) + "\n")
