"""m4v-tiny / dit-tiny: pyramidal flow-matching training of the tiny transformer on world videos.

Both use the same data, steps, seed and schedule; only the single-stream mixer differs (MM-DiM + temporal
branch vs attention). Videos go through the frozen vae-tiny (normalised latent means) and captions through
the frozen text-tiny encoders; 10% of captions are dropped to the null condition so CFG works at sampling.
The shipped weights are an exponential moving average of the trained ones (as PyramidFlow's EMA checkpoints).

Recipe options (the defaults are the paper's readings and what the shipped 15,000-step models were trained
with; "legacy" is the first implementation, which trained the 9,000-step models; see docs/paper-readings.md):
  temporal_variant  "tiles" | "paper" (before issue 31) | "pooled" (legacy)   M4VConfig.temporal_variant
  history_rope      "interpolate" | "linspace" (legacy)   M4VConfig.history_rope
  null_condition    "empty_prompt" | "zeros" (legacy)     M4VConfig.null_condition (caption dropout and CFG)
  history_noise     "shared" | "per_frame" (legacy)       m4v/training.corrupt_history
  history_noise_ramp  0 | N: the history corruption ratio rises linearly 0 -> 1/3 over N steps
  sampler           "one_stage" | "all_stages"            m4v/training.flow_matching_loss_all_stages
  init_from         None | DIR: an attention model (dit-tiny) or a PyramidFlow checkpoint (m4v/convert.py)
  init_mamba        "default" | "attention": with init_from, Mamba at its own init (lower loss in 3 of 3 seeds,
                    results/init_from_attention) or seeded from the attention's q / k / v
  data              None (the world) | CAPTIONS: the user's videos (m4v/captioned_videos.py), `train --data`
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from tqdm import tqdm

from m4v.config import M4VConfig
from m4v.recipes import BaseRecipe, step_generator, weights_path
from m4v.recipes.text_encoders import POOLED_DIM, TEXT_LEN
from m4v.sampling import TextCondition
from m4v.scheduler import PyramidSchedule
from m4v.text_encoders import TextEncoders
from m4v.training import CORRUPT_RATIO, flow_matching_loss, flow_matching_loss_all_stages
from m4v.transformer import build_model
from m4v.vae import CausalVideoVAE, VAEConfig
from m4v.world.dataset import world_batch

MIXER = {"m4v-tiny": "m4v", "dit-tiny": "attention"}
CFG_DROP = 0.1   # caption dropout for classifier-free guidance
DATASET_SEED = 20_000  # world clips of the denoisers' dataset: disjoint from the VAE's batches
EMA_DECAY = 0.999
# Recipe options and the values the shipped models were trained with (kept out of a run's record when unchanged).
SHIPPED_OPTIONS = {"temporal_variant": "tiles", "history_rope": "interpolate", "null_condition": "empty_prompt",
                   "history_noise": "shared", "history_noise_ramp": 0, "sampler": "one_stage", "init_from": None,
                   "init_mamba": "default", "data": None}
ARCHITECTURE_OPTIONS = ("temporal_variant", "history_rope", "null_condition")
SAMPLERS = ("one_stage", "all_stages")


def tiny_config(name: str, **overrides) -> M4VConfig:
    """The shipped tiny architectures: M4VConfig.tiny() with the world's caption length, vae-tiny's channels and
    width 120 (at 64 the text-following stalled: colour right in ~half the frames; 120 keeps the three shipped
    denoisers inside the 50 MB budget); the shipped temporal branch, history RoPE and null condition unless
    overridden."""
    shipped = dict(mixer=MIXER[name], text_len=TEXT_LEN, latent_channels=VAEConfig.tiny().latent_channels,
                   pooled_text_dim=POOLED_DIM, hidden_size=120, rope_axes=(6, 12, 12),
                   **{k: SHIPPED_OPTIONS[k] for k in ARCHITECTURE_OPTIONS})
    return M4VConfig.tiny(**{**shipped, **overrides})  # overrides: ablation variants (--mixer, --set, --option)


def drop_captions(text: TextCondition, generator: torch.Generator, p: float = CFG_DROP,
                  null: TextCondition | None = None) -> TextCondition:
    """Replace a random p of the batch by the null condition (what CFG's unconditional branch sees): `null`
    (batch-sized, e.g. the empty prompt's features) or zero features."""
    null = TextCondition.null_like(text) if null is None else null
    drop = torch.rand(len(text.tokens), generator=generator) < p
    pick = lambda a, b: torch.where(drop.view(-1, *[1] * (a.dim() - 1)), b, a)  # noqa: E731
    return TextCondition(pick(text.tokens, null.tokens), pick(text.mask, null.mask), pick(text.pooled, null.pooled))


class FrozenWorldEncoders:
    """vae-tiny + text-tiny, frozen: world videos -> (normalised latents, text condition)."""

    def __init__(self, weights_root=None):
        self.vae_dir = weights_path("vae-tiny", weights_root)
        self.text_dir = weights_path("text-tiny", weights_root)
        self.vae = CausalVideoVAE.from_pretrained(self.vae_dir).requires_grad_(False)
        self.text = TextEncoders.from_dir(self.text_dir, max_length=TEXT_LEN)

    @torch.no_grad()
    def encode(self, videos: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, TextCondition]:
        return self.vae.encode_normalized(videos), self.text.encode(captions)

    def fingerprint(self) -> str:
        """Hash of the frozen weights: what, besides the seed and size, determines the encoded dataset."""
        h = hashlib.sha256()
        for path in sorted([*self.vae_dir.glob("*.safetensors"), *self.text_dir.glob("*/*.safetensors")]):
            h.update(path.read_bytes())
        return h.hexdigest()[:16]


def world_fingerprint(seed: int) -> str:
    """Hash of the dataset's first two clips and captions: changes whenever the world's scenes, rendering or
    grammar do, so a cached dataset of an older world is never reused."""
    video, captions, _ = world_batch(DATASET_SEED + seed, 0, 2)
    return hashlib.sha256(video.numpy().tobytes() + json.dumps(captions).encode()).hexdigest()[:8]


class LatentDataset:
    """`size` world clips encoded once (encoding every step would cost 10x the denoiser's step on CPU), cached
    as safetensors under a name keyed by the encoders' fingerprint, the world's, seed and size. A cache with the
    same key beside the encoders' weights (where the shipped models were trained) is reused from any run
    directory: the key holds everything that determines the latents."""

    def __init__(self, encoders: FrozenWorldEncoders, seed: int, size: int, cache_dir, chunk: int = 32):
        from safetensors.torch import load_file, save_file

        key = f"{encoders.fingerprint()}-w{world_fingerprint(seed)}-s{seed}-n{size}"
        name = f"world_latents-{key}.safetensors"
        found = [d / name for d in (Path(cache_dir), encoders.vae_dir.parent)
                 if (d / name).is_file() and (d / name).with_suffix(".captions.json").is_file()]
        path = found[0] if found else Path(cache_dir) / name
        captions_path = path.with_suffix(".captions.json")
        if found:
            data, captions = load_file(str(path)), json.loads(captions_path.read_text())
        else:
            parts, captions, chunk = [], [], min(chunk, size)
            for c in tqdm(range(-(-size // chunk)), desc="encode world clips", leave=False):
                video, batch_captions, _ = world_batch(DATASET_SEED + seed, c, chunk)   # (b, 3, 17, 64, 64)
                latents, text = encoders.encode(video, batch_captions)
                parts.append({"latents": latents, "tokens": text.tokens, "mask": text.mask, "pooled": text.pooled})
                captions += batch_captions
            data = {k: torch.cat([p[k] for p in parts])[:size].contiguous() for k in parts[0]}
            captions = captions[:size]
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written under a per-process name, then renamed (captions first: a cache counts once both exist),
            # so rows trained side by side (`make -j2 paper-tables`) never read another's half-written file.
            part = f".{os.getpid()}.part"
            captions_path.with_suffix(part).write_text(json.dumps(captions))
            save_file(data, str(path.with_suffix(part + ".safetensors")))
            os.replace(captions_path.with_suffix(part), captions_path)
            os.replace(path.with_suffix(part + ".safetensors"), path)
        self.latents = data["latents"]                                              # (N, C, T, h, w)
        self.text = TextCondition(data["tokens"], data["mask"].bool(), data["pooled"])
        self.captions = captions

    def batch(self, generator: torch.Generator, batch: int) -> tuple[torch.Tensor, TextCondition, list[str]]:
        index = torch.randint(len(self.latents), (batch,), generator=generator)
        text = TextCondition(self.text.tokens[index], self.text.mask[index], self.text.pooled[index])
        return self.latents[index], text, [self.captions[i] for i in index.tolist()]


def training_latents(encoders: FrozenWorldEncoders, seed: int, dataset_size: int, cache_root: Path, clips=None,
                     quiet: bool = False):
    """The denoisers' data: `dataset_size` world clips, or the user's captioned clips (`--data`), encoded once by
    the frozen encoders into a cache under `cache_root` (beside the run directory). `quiet`: no progress or lines
    (torchrun ranks but 0, which read what rank 0 encoded and said)."""
    if clips is None:
        return LatentDataset(encoders, seed, dataset_size, cache_root)
    from m4v.captioned_videos import EncodedVideos
    from m4v.world.dataset import TRAIN_FRAMES, TRAIN_SIZE

    return EncodedVideos(clips, encoders.encode, encoders.fingerprint(), Path(cache_root) / "video_latents",
                         TRAIN_FRAMES, TRAIN_SIZE, log=(lambda m: None) if quiet else None, progress=not quiet)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float = EMA_DECAY) -> None:
    """ema <- d ema + (1 - d) model, with d warmed up as (1 + step) / (10 + step) so early steps don't linger."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)  # one call, not one per tensor


def optimise_with_ema(recipe: BaseRecipe, loss: torch.Tensor, i: int) -> None:
    """One AdamW step of a denoiser recipe's `model` (the ranks' gradients averaged, then clipped to 1.0), then its
    `ema` update: m4v-tiny / dit-tiny's and the Wan tiny recipes' step."""
    recipe.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    recipe.sync_gradients(recipe.model)
    torch.nn.utils.clip_grad_norm_(recipe.model.parameters(), 1.0, foreach=True)
    recipe.optimizer.step()
    update_ema(recipe.ema, recipe.model, i)


class Recipe(BaseRecipe):
    # The shipped m4v-tiny / dit-tiny: motion direction is learnt with training length (m4v-tiny 0.20 of moving
    # prompts at 9,000 steps, 0.60-0.80 at 15,000; results/training_steps); ~50 min for m4v-tiny on 2 cores.
    default_steps = 15_000

    def __init__(self, name, seed=0, weights_root=None, batch: int = 32, lr: float = 1e-3,
                 dataset_size: int = 4096, stage_weights=None, device: str = "cpu", arch: dict | None = None,
                 temporal_variant: str = "tiles", history_rope: str = "interpolate",
                 null_condition: str = "empty_prompt", history_noise: str = "shared", history_noise_ramp: int = 0,
                 sampler: str = "one_stage", init_from: str | None = None, init_mamba: str = "default",
                 data: str | None = None):
        if stage_weights is not None:
            stage_weights, n_stages = [float(w) for w in stage_weights], PyramidSchedule().n_stages
            if len(stage_weights) != n_stages or min(stage_weights) < 0 or sum(stage_weights) <= 0:
                raise ValueError(f"--stage-weights: need {n_stages} non-negative weights with a positive sum, got "
                                 f"{stage_weights}")
        given = dict(temporal_variant=temporal_variant, history_rope=history_rope, null_condition=null_condition,
                     history_noise=history_noise, history_noise_ramp=int(history_noise_ramp), sampler=sampler,
                     init_from=None if init_from is None else str(init_from), init_mamba=init_mamba,
                     data=None if data is None else str(Path(data).resolve()))
        if sampler not in SAMPLERS:
            raise ValueError(f"--option sampler: one of {SAMPLERS}, got {sampler!r}")
        if stage_weights is not None and sampler == "all_stages":
            raise ValueError("--stage-weights: the all_stages sampler trains every stage in every batch")
        if init_mamba != "default" and init_from is None:
            raise ValueError("--option init_mamba: only with --init-from (there is nothing to copy otherwise)")
        if int(history_noise_ramp) < 0:
            raise ValueError(f"--option history_noise_ramp: a number of steps >= 0, got {history_noise_ramp}")
        # Options at their shipped values stay out of the record, so the shipped runs' records read as before.
        extra = {} if stage_weights is None else {"stage_weights": stage_weights}
        extra.update({k: v for k, v in given.items() if v != SHIPPED_OPTIONS[k]})
        if arch:
            extra["arch"] = dict(arch)
        super().__init__(name, seed, weights_root, batch=batch, lr=lr, dataset_size=dataset_size, **extra)
        self.settings = given
        self.clips = None   # read now: a captions file without clips is refused before any work
        if data is not None:
            from m4v.captioned_videos import read_captions

            self.clips = read_captions(data)
        torch.manual_seed(seed)
        self.device = torch.device(device)  # not an option: the run's random stream is the same on any device
        architecture = {**{k: given[k] for k in ARCHITECTURE_OPTIONS}, **(arch or {})}  # --set wins
        self.model = build_model(tiny_config(name, **architecture)).to(self.device)
        self.init_report = None
        if init_from is not None:
            from m4v.convert import init_from_checkpoint

            self.init_report = init_from_checkpoint(self.model, init_from, init_mamba)
        self.encoders = FrozenWorldEncoders(weights_root)
        self.null = None  # the empty prompt's features (1, ...) when the null condition is the empty prompt
        if null_condition == "empty_prompt":
            self.null = self.encoders.text.encode([""], unconditional=False)
        self.dataset = None  # built on the first step, beside the run directory (shared by m4v-tiny / dit-tiny)
        self.schedule = PyramidSchedule()
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.modules = {"model": self.model, "ema": self.ema}
        # fused: one kernel over all parameters (the per-tensor loop cost ~10 ms of a ~90 ms dit-tiny step).
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-4,
                                           fused=self.device.type in ("cpu", "cuda"))

    def config(self) -> dict:
        return {**self.options, "ema_decay": EMA_DECAY, "model": self.model.cfg.to_dict()}

    def step(self, i: int) -> dict:
        if self.dataset is None:
            self.dataset = self.rank_zero_first(lambda: training_latents(
                self.encoders, self.seed, self.options["dataset_size"], self.out.parent, self.clips, self.rank > 0))
        generator = step_generator(self.seed, i)
        latents, text, _ = self.dataset.batch(generator, self.options["batch"])
        null = None if self.null is None else TextCondition(
            self.null.tokens.expand(len(text.tokens), -1, -1), self.null.mask.expand(len(text.tokens), -1),
            self.null.pooled.expand(len(text.tokens), -1))
        text = drop_captions(text, generator, null=null)
        latents, text = latents.to(self.device), text.to(self.device)
        self.model.train()
        self.set_lr(i)
        noise = dict(corrupt_ratio=self.corrupt_ratio(i), history_noise=self.settings["history_noise"])
        if self.settings["sampler"] == "all_stages":
            if self.world_size > 1:
                raise ValueError("--option sampler=all_stages: not under torchrun yet (its stage columns would split "
                                 "unevenly across ranks); use the default one_stage sampler")
            with self.autocast():
                loss, samples = flow_matching_loss_all_stages(self.model, latents, text, self.schedule, generator,
                                                              **noise)
            optimise_with_ema(self, loss, i)
            return {"loss": loss.item(), "unit_low": samples[0].unit, "unit_high": samples[-1].unit}
        stage = None  # uniform, drawn inside flow_matching_loss (the shipped runs' random stream)
        if "stage_weights" in self.options:
            # The last stage is the one that must draw the shape from the word; weighting it (0.2, 0.2, 0.6)
            # lifts the stage-2 start but, at 10 prompts per kind, not full generation beyond noise (README,
            # "Where generation fails"). An option, off by default.
            stage = int(torch.multinomial(torch.tensor(self.options["stage_weights"]), 1, generator=generator))
        with self.autocast():
            sample = flow_matching_loss(self.model, latents, text, self.schedule, generator, stage=stage,
                                        rows=self.my_rows(len(latents)), **noise)
        optimise_with_ema(self, sample.loss, i)
        return {"loss": sample.loss.item(), "unit": sample.unit, "stage": sample.stage}

    def corrupt_ratio(self, i: int) -> float:
        """History corruption ratio at step i: PyramidFlow's 1/3, or rising linearly to it over
        history_noise_ramp steps (one reading of the paper's "linearly increasing condition noise")."""
        ramp = self.settings["history_noise_ramp"]
        return CORRUPT_RATIO if ramp == 0 else CORRUPT_RATIO * min(1.0, (i + 1) / ramp)


    def save(self, out) -> None:
        self.ema.save_pretrained(out)
        if self.init_report is not None:  # what --init-from copied, reshaped, seeded and left at init
            (Path(out) / "init_report.json").write_text(json.dumps(self.init_report, indent=2) + "\n")
