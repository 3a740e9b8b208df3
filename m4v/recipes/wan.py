"""wan: fine-tune the transformer of a Wan2.1 pipeline directory (e.g. `m4v-bench convert wan ... --mixer mm-dim`)
with whole-latent flow matching on world videos (spec §1.7: "losses on the whole video latent").

The directory's own VAE and text encoder (frozen) encode world clips and captions, as its pipeline does at
sampling (normalised latents, prompts zero-padded to `text_len`); the transformer (attention or MM-DiM) learns the
velocity noise - x0 of x_sigma = (1 - sigma) x0 + sigma noise at timestep 1000 sigma, sigma ~ U(0, 1) pushed
through the pipeline scheduler's shift (the sigmas it samples at). The run directory is itself a pipeline
directory (the source's components, the trained transformer): `diffusers:OUT` runs it, `--init-from OUT` resumes.
With `--option reward_weight=W` (W > 0) the step adds reward learning on the whole latent (spec §1.7, §2): the
same draw's one-step clean estimate x0 = x_sigma - sigma v is decoded by the directory's frozen VAE and scored by
the project's frozen reward models (m4v/fidelity.combined_reward: tiny CLIP + the HPSv2 stand-in, from --weights),
loss = L_FM - W reward; m4v/recipes/wan_reward.py (m4v-wan-tiny-reward) is the same on the world-trained models.
`--data CAPTIONS` trains on the user's clips, encoded once by the directory's own VAE and T5 into the latent cache
beside the run directory; under torchrun every rank draws the whole batch and computes its rows (`rows=` below).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from m4v.recipes import BaseRecipe, step_generator
from m4v.wan import WanConfig, build_wan
from m4v.wan_convert import read_wan_pipeline, read_weights, save_transformer
from m4v.world.dataset import world_batch

DATASET_SEED = 30_000  # world clips of this recipe: disjoint from the other recipes' batches


@dataclass
class WholeLatentSample:
    """One whole-latent flow-matching draw: the noised latent, its sigma, the model's velocity and the loss."""

    noisy: torch.Tensor        # (B, C, F, h, w) x_sigma = (1 - sigma) x0 + sigma noise
    sigma: torch.Tensor        # (B,) in [0, 1]
    prediction: torch.Tensor   # (B, C, F, h, w) the model's velocity (target noise - x0)
    loss: torch.Tensor         # () MSE to the target

    def clean_estimate(self) -> torch.Tensor:
        """x0 from one Euler jump to sigma = 0 (spec §2's one-step estimate on the whole latent):
        x_sigma - sigma v; differentiable in the prediction. (B, C, F, h, w)"""
        return self.noisy - self.sigma.view(-1, *[1] * (self.noisy.dim() - 1)) * self.prediction


def flow_matching_sample(model, latents: torch.Tensor, text: torch.Tensor | None, generator: torch.Generator,
                         shift: float = 1.0, rows: slice | None = None) -> WholeLatentSample:
    """Whole-latent rectified flow: sigma ~ U(0, 1) through the time shift, MSE(model(x_sigma, 1000 sigma, text),
    noise - x0) averaged over the batch. `rows`: this data-parallel rank's rows of the (global) batch: sigma and
    the noise are drawn for the whole batch, as one process draws them, and only the model's forward and the loss
    run on the rank's rows (the sample holds them; equal rows per rank, so the ranks' mean loss is the batch's)."""
    sigma = torch.rand(len(latents), generator=generator)
    sigma = shift * sigma / (1 + (shift - 1) * sigma)                          # the scheduler's time shift
    noise = torch.randn(latents.shape, generator=generator)
    if rows is not None:   # (B, ...) -> (b, ...): the rank's rows, after every draw
        latents, sigma, noise = latents[rows], sigma[rows], noise[rows]
        text = None if text is None else text[rows]
    s = sigma.view(-1, *[1] * (latents.dim() - 1))
    noisy = (1 - s) * latents + s * noise
    prediction = model(noisy, sigma * 1000, text)
    return WholeLatentSample(noisy, sigma, prediction, torch.mean((prediction - (noise - latents)) ** 2))


def flow_matching_loss(model, latents: torch.Tensor, text: torch.Tensor | None, generator: torch.Generator,
                       shift: float = 1.0, rows: slice | None = None) -> torch.Tensor:
    """Whole-latent rectified flow: mean over the batch (or its `rows`) of MSE(model(x_sigma, 1000 sigma, text),
    noise - x0)."""
    return flow_matching_sample(model, latents, text, generator, shift, rows).loss


class WanPipelineEncoders:
    """A Wan pipeline directory's frozen VAE and text encoder: world videos -> (normalised latents, T5 features)."""

    def __init__(self, pipe_dir, text_len: int):
        from diffusers import DiffusionPipeline

        import m4v.wan_diffusers  # noqa: F401  (diffusers resolves an M4VWanTransformer entry from sys.modules)

        self.pipe = DiffusionPipeline.from_pretrained(str(pipe_dir), local_files_only=True)
        self.pipe.transformer = None                                           # trained here, not loaded twice
        self.pipe_dir, self.text_len = Path(pipe_dir), text_len
        vae = self.pipe.vae.config
        self.mean = torch.tensor(vae.latents_mean).view(1, vae.z_dim, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(vae.latents_std).view(1, vae.z_dim, 1, 1, 1)

    @torch.no_grad()
    def encode(self, videos: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.pipe.vae.encode(videos).latent_dist.mode()             # (B, C, F, h, w)
        text, _ = self.pipe.encode_prompt(captions, do_classifier_free_guidance=False,
                                          max_sequence_length=self.text_len)  # (B, text_len, text_dim)
        return (latents - self.mean) * self.inv_std, text

    def encode_condition(self, videos: torch.Tensor, captions: list[str]):
        """encode() as the latent caches take it (m4v/captioned_videos.EncodedVideos): the T5 features as a
        TextCondition, every token valid (the pipeline zero-pads past the prompt itself) and no pooled features."""
        from m4v.sampling import TextCondition

        latents, text = self.encode(videos, captions)
        return latents, TextCondition(text, torch.ones(text.shape[:2], dtype=torch.bool), text.new_zeros(len(text), 0))

    def fingerprint(self) -> str:
        """Hash of what determines an encoded clip besides the clip: the VAE's, text encoder's and tokenizer's
        files (weights and configs, read in full: a fine-tuned encoder of the same shapes is another dataset) and
        the prompt length."""
        from m4v.file_hash import file_sha256

        h = hashlib.sha256(f"text_len={self.text_len}".encode())
        for component in ("vae", "text_encoder", "tokenizer"):
            for path in sorted(p for p in (self.pipe_dir / component).rglob("*") if p.is_file()):
                h.update(f"{path.relative_to(self.pipe_dir)}:{file_sha256(path)}".encode())
        return h.hexdigest()[:16]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> the VAE's pixels in [-1, 1], differentiable in the latents: (B, 3, T, H, W)."""
        return self.pipe.vae.decode(latents / self.inv_std + self.mean).sample


class Recipe(BaseRecipe):
    default_steps = 2000

    def __init__(self, name, seed=0, weights_root=None, init_from: str | None = None, batch: int = 8,
                 lr: float = 1e-4, dataset_size: int = 64, text_len: int = 512, reward_weight: float = 0.0,
                 data: str | None = None):
        if init_from is None:
            raise ValueError("--init-from: wan trains a Wan pipeline directory's transformer; give one "
                             "(m4v-bench convert wan PIPE_DIR --out DIR --mixer attention|mm-dim)")
        index, config, folder = read_wan_pipeline(init_from)
        if not str(text_len).isdigit() or int(text_len) < 1:
            raise ValueError(f"--option text_len: a positive number of tokens, got {text_len!r}")
        text_len = int(text_len)
        super().__init__(name, seed, weights_root, init_from=str(Path(init_from).resolve()), batch=batch, lr=lr,
                         dataset_size=dataset_size, text_len=text_len,
                         **({"reward_weight": reward_weight} if reward_weight else {}),
                         **({} if data is None else {"data": str(Path(data).resolve())}))
        self.clips = None   # the user's videos (`--data`), read now: an empty captions file is refused at once
        if data is not None:
            from m4v.captioned_videos import read_captions

            self.clips = read_captions(data)
        self.source, self.index = Path(init_from), index
        mixer = config.get("mixer", "attention") if config.get("_class_name") == "M4VWanTransformer" else "attention"
        wan = WanConfig.from_diffusers(config, mixer=mixer, **{
            k: config[k] for k in ("d_state", "expand", "d_conv", "dt_rank", "zigzag", "n_zigzag_paths")
            if k in config})
        if "use_registers" in config:
            wan = WanConfig.from_dict({**wan.to_dict(), "registers": config["use_registers"]})
        torch.manual_seed(seed)
        self.model = build_wan(wan)
        self.model.load_state_dict(read_weights(folder), strict=True)
        self.encoders = WanPipelineEncoders(init_from, text_len)
        self.shift = float(self.encoders.pipe.scheduler.config.get("shift", 1.0))
        self.rewards = None
        if reward_weight:
            from m4v.fidelity import load_reward_models

            self.encoders.pipe.vae.requires_grad_(False)
            self.rewards = load_reward_models(weights_root)          # (clip bundle, fidelity), frozen
        self.data = None
        self.modules = {"model": self.model}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=1e-4)

    def config(self) -> dict:
        return {**self.options, "model": self.model.cfg.to_dict(), "shift": self.shift}

    def dataset(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """`dataset_size` world clips encoded once by the pipeline's own encoders (in memory), or the user's clips
        (`--data`: the world's 17 frames at 64 px and 8 fps, as the world clips this recipe trains on otherwise)
        encoded once into the latent cache beside the run directory; with their captions."""
        if self.data is None and self.clips is not None:
            from m4v.captioned_videos import EncodedVideos
            from m4v.world.dataset import TRAIN_FRAMES, TRAIN_SIZE

            quiet = self.rank > 0   # torchrun ranks but 0 read what rank 0 encoded and said
            clips = self.rank_zero_first(lambda: EncodedVideos(
                self.clips, self.encoders.encode_condition, self.encoders.fingerprint(),
                self.out.parent / "video_latents", TRAIN_FRAMES, TRAIN_SIZE,
                log=(lambda m: None) if quiet else None, progress=not quiet))
            self.data = (clips.latents, clips.text.tokens, clips.captions)
        elif self.data is None:
            video, captions, _ = world_batch(DATASET_SEED + self.seed, 0, self.options["dataset_size"])
            self.data = (*self.encoders.encode(video, captions), captions)
        return self.data

    def step(self, i: int) -> dict:
        latents, text, captions = self.dataset()
        generator = step_generator(self.seed, i)
        index = torch.randint(len(latents), (self.options["batch"],), generator=generator)   # the whole batch's
        rows = self.my_rows(len(index))   # this rank's rows (torchrun); None: all
        self.model.train()
        self.set_lr(i, warmup=20)
        sample = flow_matching_sample(self.model, latents[index], text[index], generator, self.shift, rows=rows)
        loss, metrics = sample.loss, {}
        if self.rewards is not None:
            from m4v.fidelity import combined_reward

            video = self.encoders.decode(sample.clean_estimate())                     # (b, 3, T, H, W)
            mine = index.tolist()[rows or slice(None)]
            reward = combined_reward(video, [captions[k] for k in mine], *self.rewards).mean()
            loss = loss - self.options["reward_weight"] * reward
            metrics = {"fm_loss": sample.loss.item(), "reward": reward.item()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync_gradients(self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": loss.item(), **metrics}

    def save(self, out) -> None:
        """A pipeline directory: the source's components and model_index.json, the trained transformer."""
        out = Path(out)
        for component, entry in self.index.items():
            if component.startswith("_") or component == "transformer" or not isinstance(entry, list) or not any(
                    entry):
                continue
            shutil.copytree(self.source / component, out / component, dirs_exist_ok=True)
        save_transformer(self.model, out / "transformer")
        (out / "model_index.json").write_text(json.dumps(self.index, indent=2) + "\n")
