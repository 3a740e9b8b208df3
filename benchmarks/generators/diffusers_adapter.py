"""`diffusers:PATH[?dtype=bf16&guidance=5&steps=50&negative_prompt=...]`: any diffusers text-to-video pipeline
saved on disk, as a Generator: `DiffusionPipeline.from_pretrained(PATH, local_files_only=True)`, one
torch.Generator per video (so a video does not depend on its batch), frames from the output's `frames`
(output_type "np"). Options: dtype (fp32, bf16, fp16), device (default cpu), batch (prompts per call), fps;
steps -> num_inference_steps (default: the suite's steps summed), guidance -> guidance_scale (default the
suite's), frames / height / width (default the suite's) and any other keyword of the pipeline's __call__, passed
as given. Every call argument is in the fingerprint (cache key, provenance). diffusers is an optional extra,
imported only here: `pip install -e '.[diffusers]'`.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from benchmarks.core.errors import GenerationFailed, GeneratorError
from benchmarks.core.hashing import tree_sha256
from benchmarks.generators.base import (
    Capabilities,
    Generation,
    Generator,
    debug_enabled,
    quiet_libraries,
    split_query,
)

PREFIX = "diffusers:"
INSTALL = "diffusers is not installed: pip install -e '.[diffusers]' (or pip install diffusers transformers)"
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16",
          "float16": "float16"}
HARNESS_OPTIONS = ("dtype", "device", "batch", "fps")   # how the harness runs the pipeline, not call arguments
RENAMED = {"steps": "num_inference_steps", "guidance": "guidance_scale", "frames": "num_frames"}


class DiffusersGenerator(Generator):
    """A saved pipeline, called with every prompt of a batch and a generator per video."""

    kind = "diffusers"

    def __init__(self, spec: str, name: str, path: Path, options: dict, pipe):
        super().__init__(spec, name)
        self.path, self.pipe, self.last_call = path, pipe, None
        self.dtype = DTYPES[str(options.get("dtype", "fp32"))]
        self.device = str(options.get("device", "cpu"))
        self.call_options = {RENAMED.get(k, k): v for k, v in options.items() if k not in HARNESS_OPTIONS}
        self.accepted = set(inspect.signature(pipe.__call__).parameters)
        self.capabilities = Capabilities(max_batch=options.get("batch"), fps=options.get("fps"), device=self.device)

    def call_arguments(self, sampling) -> dict:
        """The pipeline call's keywords besides prompt and generator: the suite's size and sampling where the
        pipeline takes them, the spec's options over them."""
        defaults = {"num_frames": sampling.frames, "height": sampling.height, "width": sampling.width,
                    "num_inference_steps": int(sum(sampling.steps)), "guidance_scale": float(sampling.guidance)}
        call = {k: v for k, v in defaults.items() if k in self.accepted}
        return {**call, **self.call_options, "output_type": "np"}

    def fingerprint(self) -> dict:
        import diffusers

        return {"diffusers": tree_sha256(self.path), "pipeline": type(self.pipe).__name__,
                "diffusers_version": diffusers.__version__, "dtype": self.dtype, "device": self.device,
                "options": self.call_options}

    def provenance(self) -> dict:
        return {**super().provenance(), "path": str(self.path), "call": self.last_call}

    def generate(self, prompts, seeds, sampling) -> Generation:
        import torch

        call = self.last_call = self.call_arguments(sampling)
        generators = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        with quiet_libraries():
            output = self.pipe(prompt=list(prompts), generator=generators, **call)
        return Generation(videos_of(output, len(prompts)), call=call)


def videos_of(output, n: int) -> list:
    """A pipeline output's `frames` as n videos (T, H, W, 3): a (B, T, H, W, 3) array, or a list of videos."""
    frames = getattr(output, "frames", None)
    if frames is None and isinstance(output, (tuple, list)):
        frames = output[0]
    if frames is None:
        raise GenerationFailed(f"pipeline output {type(output).__name__} has no frames")
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    videos = list(frames) if isinstance(frames, (np.ndarray, list, tuple)) else []
    if len(videos) != n:
        raise GenerationFailed(f"pipeline returned {len(videos)} videos for {n} prompts")
    return [np.stack([np.asarray(f) for f in v]) if isinstance(v, (list, tuple)) else v for v in videos]


def import_own_components(path: Path) -> None:
    """diffusers resolves a component's library from sys.modules only: import those of this project's `m4v`
    package that model_index.json names (`m4v-bench convert` writes ["m4v.wan_diffusers", ...]); no other."""
    import importlib
    import json

    index = json.loads((path / "model_index.json").read_text())
    for entry in index.values() if isinstance(index, dict) else ():
        if isinstance(entry, list) and entry and isinstance(entry[0], str) and entry[0].startswith("m4v."):
            importlib.import_module(entry[0])


def diffusers_generator(spec: str) -> DiffusersGenerator:
    """Load the pipeline before any work; a bad path, option or missing extra is one line naming the spec."""
    rest, options = split_query(spec[len(PREFIX):], spec)
    path = Path(rest)
    if not (path / "model_index.json").is_file():
        raise GeneratorError(f"--models {spec}: {path / 'model_index.json'} is missing (a directory written by a "
                             "diffusers pipeline's save_pretrained)")
    if str(options.get("dtype", "fp32")) not in DTYPES:
        raise GeneratorError(f"--models {spec}: dtype {options['dtype']!r}; one of {', '.join(DTYPES)}")
    from benchmarks.core.flags import ADAPTER_OPTION_BOUNDS, BOUNDS

    for key, bound in ADAPTER_OPTION_BOUNDS.items():   # typed and bounded before the pipeline is loaded
        if key in options:
            try:
                options[key] = BOUNDS[bound].check(options[key], f"--models {spec}: option {key!r}")
            except ValueError as exc:
                raise GeneratorError(str(exc)) from None
    if str(options.get("device", "cpu")).split(":")[0] not in ("cpu", "cuda", "mps"):
        raise GeneratorError(f"--models {spec}: device {options['device']!r}; one of cpu, cuda, cuda:N, mps")
    try:
        with quiet_libraries():
            import torch
            from diffusers import DiffusionPipeline
    except ImportError as exc:
        raise GeneratorError(f"--models {spec}: {INSTALL}") from exc
    if not debug_enabled():   # its progress bars and log lines: only with --debug
        import diffusers

        diffusers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
    try:
        import_own_components(path)
        dtype = getattr(torch, DTYPES[str(options.get("dtype", "fp32"))])
        with quiet_libraries():
            pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
            pipe = pipe.to(str(options.get("device", "cpu")))
    except Exception as exc:  # noqa: BLE001 - a pipeline that cannot load is the spec's: exit 2 before any work
        raise GeneratorError(f"--models {spec}: cannot load the pipeline ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())})") from None
    pipe.set_progress_bar_config(disable=True)
    generator = DiffusersGenerator(spec, f"diffusers:{path.resolve().name}" + (
        "?" + spec.partition("?")[2] if options else ""), path, options, pipe)
    unknown = [k for k in generator.call_options if k not in generator.accepted]
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(pipe.__call__).parameters.values()):
        raise GeneratorError(f"--models {spec}: {type(pipe).__name__} takes no {unknown[0]!r} (options: "
                             f"{', '.join(HARNESS_OPTIONS)}, steps, guidance, frames or a keyword of its __call__)")
    return generator
