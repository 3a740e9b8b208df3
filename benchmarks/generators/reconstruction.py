"""`reconstruction:VAE`: the world prompts' true renders through the VAE and back, as a Generator: the ceiling
any denoiser on this VAE can reach (report.md shows it beside the floors). It needs world prompts (their scenes)
and makes no generation record (it is not a generation: no compute row). It keeps the shipped seed rule and
cache keys (its videos do not depend on the seed at all).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from benchmarks.core.errors import GeneratorError
from benchmarks.core.hashing import file_sha256, tree_sha256
from benchmarks.generators.base import Capabilities, Generation, Generator

PREFIX = "reconstruction:"


def vae_frames_for(frames: int) -> int:
    """The 1 + 8k pixel frames the VAE takes for a `frames`-frame video."""
    from m4v.pyramid import VAE_TEMPORAL
    from m4v.text_to_video import latent_frames_for

    return 1 + VAE_TEMPORAL * (latent_frames_for(frames) - 1)


def true_latents(vae, entries: list[dict], n_frames: int = 1) -> tuple[list, torch.Tensor]:
    """The entries' scenes rendered at n_frames (1 + 8k) and their true normalised latents (B, C, T, h, w)."""
    from m4v.world import Scene, render
    from m4v.world.dataset import to_model_video

    scenes = [replace(Scene.from_dict(e["auxiliary_info"]["world"]), n_frames=n_frames) for e in entries]
    return scenes, vae.encode_normalized(torch.stack([to_model_video(render(s)) for s in scenes]))


def decoded(vae, latents: torch.Tensor) -> np.ndarray:
    """(B, C, T, h, w) normalised latents -> (B, T', H, W, 3) uint8 videos."""
    from m4v.world.dataset import to_uint8_frames

    return np.stack([to_uint8_frames(v) for v in vae.decode_normalized(latents)])


@torch.no_grad()
def reconstruct_suite(vae, entries: list[dict], frames: int) -> list[np.ndarray]:
    """World prompts' true renders through the VAE and back: the ceiling any denoiser on this VAE can reach."""
    return [decoded(vae, true_latents(vae, [e], vae_frames_for(frames))[1])[0][:frames] for e in entries]


class ReconstructionGenerator(Generator):
    """The world's true videos through a VAE."""

    kind = "reconstruction"
    role = "ceiling"
    capabilities = Capabilities(per_video_seeds=False, compute="none")

    def __init__(self, spec: str, name: str, directory, vae_dir, text_dir):
        super().__init__(spec, name)
        self.directory, self.vae_dir, self.text_dir = directory, vae_dir, text_dir
        self.entries, self.vae = {}, None

    def fingerprint(self) -> dict:
        # the fields the runner keyed reconstruction samples on before generators existed
        return {"checkpoint": file_sha256(self.directory / "model.safetensors"),
                "config": file_sha256(self.directory / "config.json"), "vae": tree_sha256(self.vae_dir),
                "text_encoder": tree_sha256(self.text_dir)}

    def provenance(self) -> dict:
        return {"sha256": file_sha256(self.directory / "model.safetensors"), "spec": self.spec,
                "kind": self.kind, "role": self.role}

    def bind(self, entries: list[dict]) -> None:
        if any("world" not in (e.get("auxiliary_info") or {}) for e in entries):
            raise GeneratorError(f"--models {self.spec}: reconstruction needs world prompts (their scenes)")
        self.entries = {e["prompt_en"]: e for e in entries}

    def generate(self, prompts, seeds, sampling) -> Generation:
        from m4v.vae import CausalVideoVAE

        if self.vae is None:
            self.vae = CausalVideoVAE.from_pretrained(self.directory)
        return Generation(reconstruct_suite(self.vae, [self.entries[p] for p in prompts], sampling.frames))

    def close(self) -> None:
        self.vae = None


def reconstruction_generator(spec: str, vae: str, text_encoder: str) -> ReconstructionGenerator:
    from m4v.checkpoint import weights_path

    try:
        directory = weights_path(spec[len(PREFIX):])
    except FileNotFoundError as exc:
        raise GeneratorError(f"--models {spec}: {exc}") from exc
    if not (directory / "model.safetensors").is_file():
        raise GeneratorError(f"--models {spec}: {directory / 'model.safetensors'} is missing (a VAE directory)")
    return ReconstructionGenerator(spec, f"{directory.name} (reconstruction)", directory, weights_path(vae),
                                   weights_path(text_encoder))
