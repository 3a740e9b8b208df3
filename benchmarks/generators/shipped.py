"""The shipped denoisers and any save_pretrained / `m4v-bench train` directory (config.json + model.safetensors)
as a Generator: text-tiny + the denoiser + vae-tiny, through TextToVideo. They measure their own compute
(benchmarks/compute/measured_generation.py: FlopCounterMode per call layout with the mixer split, fvcore beside it) and
keep their baselines' seed rule (one seed per batch: suite.seed + 1000 sample + batch) and cache keys.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.core.errors import GeneratorError
from benchmarks.core.hashing import file_sha256, tree_sha256
from benchmarks.core.outputs import SNAPSHOT_DIR
from benchmarks.generators.base import Capabilities, Generation, Generator


class CheckpointGenerator(Generator):
    """A denoiser checkpoint with the suite's VAE and text encoder."""

    kind = "checkpoint"
    capabilities = Capabilities(per_video_seeds=False, compute="own")

    def __init__(self, spec: str, name: str, directory: Path, vae_dir: Path, text_dir: Path):
        super().__init__(spec, name)
        self.directory, self.vae_dir, self.text_dir = directory, vae_dir, text_dir
        self.pipe, self.warm_up_seconds = None, None
        from benchmarks.core.training_record import trained_steps

        self.trained = trained_steps(directory)   # its training.json checked now, before any work

    def fingerprint(self) -> dict:
        # the same fields, so the same cache keys, as before generators existed: the committed baselines' samples;
        # a checkpoint's own sampling defaults (m4v/sampling.SamplingDefaults) join the key only where it has them
        from m4v.sampling import SAMPLING_NAME

        key = {"checkpoint": file_sha256(self.directory / "model.safetensors"),
               "config": file_sha256(self.directory / "config.json"), "vae": tree_sha256(self.vae_dir),
               "text_encoder": tree_sha256(self.text_dir)}
        if (self.directory / SAMPLING_NAME).is_file():
            key["sampling_defaults"] = file_sha256(self.directory / SAMPLING_NAME)
        return key

    def provenance(self) -> dict:
        info = {"sha256": file_sha256(self.directory / "model.safetensors"), "spec": self.spec, **self.trained}
        if self.warm_up_seconds is not None:
            info["warm_up_seconds_per_video"] = self.warm_up_seconds
        return info

    def sampling_problem(self, sampling) -> str | None:
        """The sizes TextToVideo honours (m4v/pyramid.py size_multiple), read off config.json before any work."""
        from m4v.checkpoint import read_config
        from m4v.pyramid import size_multiple

        patch = read_config(self.directory / "config.json").get("patch_size", 1)
        for key in ("height", "width"):
            if getattr(sampling, key) % size_multiple(patch):
                return (f"key 'sampling.{key}' = {getattr(sampling, key)} is not a multiple of {size_multiple(patch)}, "
                        f"which model {self.spec!r} needs (VAE 8 x pyramid 4 x patch {patch})")
        return None

    def generate(self, prompts, seeds, sampling) -> Generation:
        from benchmarks.compute.measured_generation import generate_measured
        from m4v.text_to_video import TextToVideo

        s, seed = sampling, seeds[0]   # one seed per batch (the runner passes the batch's seed for every video)
        if self.pipe is None:
            self.pipe = TextToVideo.from_pretrained(str(self.directory), vae=str(self.vae_dir),
                                                    text_encoder=str(self.text_dir))
            # one untimed warm-up batch (numba compilation, first calls, allocator), so the timed batches are the
            # steady state: what it cost is kept apart in the provenance
            _, warm = generate_measured(self.pipe, prompts, s.frames, s.height, s.width, seed, s.steps, s.guidance)
            self.warm_up_seconds = next((r["seconds"] for r in warm if r), None)   # None: every video failed
        videos, records = generate_measured(self.pipe, prompts, s.frames, s.height, s.width, seed, s.steps,
                                            s.guidance)
        return Generation(videos, records)

    def close(self) -> None:
        self.pipe = None


def checkpoint_generator(spec: str, vae: str, text_encoder: str) -> CheckpointGenerator:
    """A shipped name or a directory -> its Generator; a missing or incomplete checkpoint is one line naming it."""
    from m4v.checkpoint import weights_path

    try:
        directory = weights_path(spec)
    except FileNotFoundError as exc:
        raise GeneratorError(f"--models {spec}: {exc}") from exc
    for needed in ("config.json", "model.safetensors"):
        if not (directory / needed).is_file():
            raise GeneratorError(f"--models {spec}: {directory / needed} is missing (a shipped name, a directory "
                                 "written by save_pretrained, or python: / diffusers: / cmd: / control: / "
                                 "reconstruction:)")
    from m4v.checkpoint import load_weights

    try:   # before any work: a corrupt or diverged checkpoint (NaN / inf weights or config numbers) never generates
        config, _ = load_weights(directory)
    except ValueError as exc:
        raise GeneratorError(f"--models {spec}: {exc}") from exc
    name = spec if "/" not in spec and not Path(spec).is_dir() else directory.resolve().name
    if directory.resolve().parent.name == SNAPSHOT_DIR:  # train's RUN/snapshots/step-N: named by its run
        name = f"{directory.resolve().parent.parent.name}@{name}"
    from m4v.wan_text_to_video import is_wan_config

    if is_wan_config(config):   # wan-tiny / m4v-wan-tiny: whole-latent sampling (benchmarks/generators/wan_checkpoint)
        from benchmarks.generators.wan_checkpoint import WanCheckpointGenerator

        return WanCheckpointGenerator(spec, name, directory, weights_path(vae), weights_path(text_encoder))
    return CheckpointGenerator(spec, name, directory, weights_path(vae), weights_path(text_encoder))
