"""A world-trained Wan checkpoint (the shipped wan-tiny / m4v-wan-tiny, or a `train --model wan-tiny` directory)
as a Generator: text-tiny + the Wan transformer + vae-tiny through m4v/wan_text_to_video.py. Whole-latent Euler
sampling with sum(sampling.steps) steps (24 at the suite default: as many calls per video as the pyramidal models
make per latent frame) and the suite's CFG scale. It measures its own compute: FlopCounterMode on one call of each
latent shape on the meta device (self-mixer split as wan-flops counts it), times the calls; seconds around the
whole batch (text, sampling, decoding); one seed per batch, as the shipped denoisers.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.core.errors import GenerationFailed
from benchmarks.core.hashing import file_sha256, tree_sha256
from benchmarks.generators.base import Capabilities, Generation, Generator

_CALL_FLOPS: dict = {}   # (config, call shape, text shape) -> {total, mixer}: counting is slow, shapes fix it


def call_flops(cfg, shape: tuple, text_shape: tuple) -> dict:
    """{total, mixer} FLOPs of one WanTransformer call on a latent of `shape` (B, C, F, H, W), on meta."""
    key = (repr(cfg), shape, text_shape)
    if key not in _CALL_FLOPS:
        import torch

        from benchmarks.compute.flops import wan_mixer_names as mixer_names
        from m4v.ops import torch_flops
        from m4v.wan import build_wan

        model = build_wan(cfg, device="meta", init=False).eval()
        with torch.device("meta"):
            inputs = (torch.zeros(shape), torch.full(shape[:1], 500.0), torch.zeros(shape[0], *text_shape))
        flops = torch_flops(model, inputs)
        names = set(mixer_names(cfg))
        _CALL_FLOPS[key] = {"total": flops.total,
                            "mixer": sum(n for k, n in flops.by_module.items() if k.split(".", 1)[-1] in names)}
    return _CALL_FLOPS[key]


class WanCheckpointGenerator(Generator):
    """A Wan transformer directory with the suite's VAE and text encoder."""

    kind = "wan-checkpoint"
    capabilities = Capabilities(per_video_seeds=False, compute="own")

    def __init__(self, spec: str, name: str, directory: Path, vae_dir: Path, text_dir: Path):
        super().__init__(spec, name)
        self.directory, self.vae_dir, self.text_dir = directory, vae_dir, text_dir
        self.pipe, self.warm_up_seconds = None, None
        from benchmarks.core.training_record import trained_steps

        self.trained = trained_steps(directory)

    def fingerprint(self) -> dict:
        return {"checkpoint": file_sha256(self.directory / "model.safetensors"),
                "config": file_sha256(self.directory / "config.json"), "vae": tree_sha256(self.vae_dir),
                "text_encoder": tree_sha256(self.text_dir), "sampler": "wan-euler-whole-latent"}

    def provenance(self) -> dict:
        info = {"sha256": file_sha256(self.directory / "model.safetensors"), "spec": self.spec, **self.trained,
                "sampler": "whole-latent flow-matching Euler, sum(sampling.steps) steps, CFG on the empty prompt"}
        if self.warm_up_seconds is not None:
            info["warm_up_seconds_per_video"] = self.warm_up_seconds
        return info

    def sampling_problem(self, sampling) -> str | None:
        from m4v.checkpoint import read_config
        from m4v.pyramid import VAE_SPATIAL

        multiple = VAE_SPATIAL * read_config(self.directory / "config.json").get("patch_size", [1, 2, 2])[1]
        for key in ("height", "width"):
            if getattr(sampling, key) % multiple:
                return (f"key 'sampling.{key}' = {getattr(sampling, key)} is not a multiple of {multiple}, which "
                        f"model {self.spec!r} needs (VAE 8 x patch)")
        return None

    def _batch(self, prompts, seed, sampling) -> tuple[list, list]:
        import torch

        from benchmarks.compute.measure import measure
        from m4v.wan_text_to_video import sample_wan_latents
        from m4v.world.dataset import to_uint8_frames

        pipe, s = self.pipe, sampling
        shape = pipe.latent_shape(len(prompts), s.frames, s.height, s.width)
        steps = int(sum(s.steps))
        (text, null), encode = measure(lambda: pipe.encode(prompts))
        (latents, stats), sample = measure(lambda: sample_wan_latents(pipe.model, text, null, shape, steps,
                                                                      s.guidance, seed))
        video, decode = measure(lambda: pipe.vae.decode_normalized(latents))     # (B, 3, 1 + 8k, H, W)
        total = {"total": 0, "mixer": 0}
        for call_shape in stats.shapes:
            one = call_flops(pipe.model.cfg, tuple(call_shape), tuple(text.shape[1:]))
            total = {k: total[k] + one[k] for k in total}
        n = len(prompts)
        seconds = encode.seconds + sample.seconds + decode.seconds
        record = {"flops": total["total"] / n, "mixer_flops": total["mixer"] / n, "flops_fvcore": None,
                  "seconds": seconds / n, "seconds_per_frame": sample.seconds / shape[2] / n,
                  "peak_mb": max(encode.peak_extra_mb, sample.peak_extra_mb, decode.peak_extra_mb),
                  "forwards": stats.forwards, "batch": n}
        finite = [bool(torch.isfinite(lat).all()) and bool(torch.isfinite(v).all()) for lat, v in zip(latents, video)]
        videos = [to_uint8_frames(v)[:s.frames] if ok else GenerationFailed(
            "non-finite latents or frames (NaN or inf) during generation: no score is computed on them")
            for v, ok in zip(video, finite)]
        return videos, [dict(record) if ok else None for ok in finite]

    def generate(self, prompts, seeds, sampling) -> Generation:
        from m4v.wan_text_to_video import WanTextToVideo

        seed = seeds[0]   # one seed per batch (the runner passes the batch's seed for every video)
        if self.pipe is None:
            self.pipe = WanTextToVideo.from_pretrained(str(self.directory), vae=str(self.vae_dir),
                                                       text_encoder=str(self.text_dir))
            _, warm = self._batch(prompts, seed, sampling)   # untimed warm-up, as the shipped denoisers
            self.warm_up_seconds = next((r["seconds"] for r in warm if r), None)
        videos, records = self._batch(prompts, seed, sampling)
        return Generation(videos, records)

    def close(self) -> None:
        self.pipe = None
