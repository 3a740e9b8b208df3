"""Validity floors: `control:KIND[?of=SPEC]`, videos that carry no skill, so a metric on which a model is not
separated from them measures nothing about it (report.md flags it). `static`: a mid-grey video; `noise`: uniform
random pixels, seeded per video; `first-frame`: a chosen generator's video with its first frame held (the content
without the motion); `shuffled-prompts`: a chosen generator's video of the next prompt of the suite, labelled with
this one (the video without the text). `of` defaults to the run's first model that is not a control or a
reconstruction. The runner derives `first-frame` and `shuffled-prompts` from the chosen generator's own videos
(read from the cache where it made them), with its seeds.
"""

from __future__ import annotations

import numpy as np

from benchmarks.core.errors import GeneratorError
from benchmarks.generators.base import Capabilities, Generation, Generator

PREFIX = "control:"
KINDS = ("static", "first-frame", "noise", "shuffled-prompts")
DERIVED = ("first-frame", "shuffled-prompts")   # made from a chosen generator's videos
VERSION = "1"
GREY = 128


class ControlGenerator(Generator):
    """A floor: static and noise made here, first-frame and shuffled-prompts derived from `base`'s videos."""

    kind = "control"
    role = "floor"

    def __init__(self, spec: str, name: str, control: str, base: Generator | None):
        super().__init__(spec, name)
        self.control, self.base, self.source = control, base, {}
        self.capabilities = Capabilities(per_video_seeds=base.capabilities.per_video_seeds if base else True,
                                         compute="none", fps=base.capabilities.fps if base else None)

    def fingerprint(self) -> dict:
        return {"control": self.control, "version": VERSION, "base": self.base.fingerprint() if self.base else None}

    def fps(self, sampling) -> float:
        return self.base.fps(sampling) if self.base else super().fps(sampling)

    def bind(self, entries: list[dict]) -> None:
        if self.base is not None:
            self.base.bind(entries)
        if self.control == "shuffled-prompts":
            prompts = list(dict.fromkeys(e["prompt_en"] for e in entries))
            if len(prompts) < 2:
                raise GeneratorError(f"--models {self.spec}: shuffled prompts need a suite of at least 2 prompts")
            # the next prompt, cyclically: every video gets another prompt's label, and the same one on any rank
            self.source = {p: prompts[(i + 1) % len(prompts)] for i, p in enumerate(prompts)}

    def source_prompt(self, prompt: str) -> str:
        """The prompt whose base video this control shows under `prompt`."""
        return self.source.get(prompt, prompt)

    def derive(self, frames: np.ndarray) -> np.ndarray:
        """This control's video from the base generator's video of source_prompt."""
        return np.repeat(frames[:1], len(frames), axis=0) if self.control == "first-frame" else frames

    def generate(self, prompts, seeds, sampling) -> Generation:
        shape = (sampling.frames, sampling.height, sampling.width, 3)
        if self.control == "static":
            return Generation([np.full(shape, GREY, np.uint8) for _ in prompts])
        if self.control == "noise":
            return Generation([np.random.default_rng(int(s)).integers(0, 256, shape, dtype=np.uint8) for s in seeds])
        raise NotImplementedError(f"{self.spec}: derived from {self.base.name}'s videos by the runner")


def control_generator(spec: str, resolve, models) -> ControlGenerator:
    """`control:KIND[?of=SPEC]`; `resolve(spec)` makes the base generator, `models` are the run's specs (the
    default base is the first that is neither a control nor a reconstruction)."""
    from benchmarks.generators.base import split_query

    kind, options = split_query(spec[len(PREFIX):], spec)
    if kind not in KINDS:
        raise GeneratorError(f"--models {spec}: unknown control {kind!r}; one of {', '.join(KINDS)}")
    unknown = sorted(set(options) - {"of"})
    if unknown or ("of" in options and kind not in DERIVED):
        raise GeneratorError(f"--models {spec}: unknown option {(unknown or ['of'])[0]!r}" + (
            " (only first-frame and shuffled-prompts take of=SPEC)" if not unknown else ""))
    if kind not in DERIVED:
        return ControlGenerator(spec, spec, kind, None)
    of = options.get("of")
    if of is None:
        of = next((m for m in models if not m.startswith((PREFIX, "reconstruction:"))), None)
        if of is None:
            raise GeneratorError(f"--models {spec}: no generator to take the videos of (give ?of=SPEC, or a model)")
    if str(of).startswith(PREFIX):
        raise GeneratorError(f"--models {spec}: of={of}: a control of a control")
    base = resolve(str(of))
    return ControlGenerator(spec, f"control:{kind}({base.name})", kind, base)
