"""`python:MODULE:FACTORY[?k=v&...]`: a researcher's own Python code as a Generator. MODULE is a dotted module
name (importable, or from the working directory) or a .py file; FACTORY(**options) is called once, before any
work, and returns either an object with `generate(prompts, seeds, sampling) -> list of videos` (optional:
`fingerprint()`, `max_batch`, `fps`) or a plain callable `(prompt, seed, sampling) -> video`. A video is uint8
(T, H, W, 3) or floats in [0, 1] (numpy or torch); `sampling` has frames, height, width, steps, guidance, fps.
FLOPs are counted by FlopCounterMode around one real call (torch code); seconds and memory around each item.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from benchmarks.core.errors import GenerationFailed, GeneratorError
from benchmarks.core.hashing import file_sha256, key_of
from benchmarks.generators.base import Capabilities, Generation, Generator, split_query

PREFIX = "python:"


class PythonGenerator(Generator):
    """A factory's object or callable."""

    kind = "python"

    def __init__(self, spec: str, name: str, target: str, options: dict, made, source: Path | None):
        super().__init__(spec, name)
        self.target, self.options, self.made, self.source = target, options, made, source
        self.batched = callable(getattr(made, "generate", None))
        self.capabilities = Capabilities(max_batch=int(getattr(made, "max_batch", 0) or 0) or None
                                         if self.batched else 1, fps=getattr(made, "fps", None))

    def fingerprint(self) -> dict:
        own = getattr(self.made, "fingerprint", None)
        return {"python": self.target, "options": self.options,
                "source": file_sha256(self.source) if self.source and self.source.is_file() else None,
                "object": own() if callable(own) else None}

    def generate(self, prompts, seeds, sampling) -> Generation:
        if self.batched:
            videos = list(self.made.generate(list(prompts), list(seeds), sampling))
            if len(videos) != len(prompts):
                raise GenerationFailed(f"{self.spec}: generate returned {len(videos)} videos for {len(prompts)} "
                                       "prompts")
            return Generation(videos)
        videos = []
        for prompt, seed in zip(prompts, seeds):
            try:
                videos.append(self.made(prompt, seed, sampling))
            except Exception as exc:  # noqa: BLE001 - one video's failure is its failed row
                videos.append(GenerationFailed(f"{type(exc).__name__}: {exc}"))
        return Generation(videos)


def _import(target: str, spec: str):
    """A module by dotted name (the working directory on the path too) or by .py file."""
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.is_file():
                raise GeneratorError(f"--models {spec}: {path} is not a file")
            name = f"m4v_user_generator_{key_of(str(path.resolve()))[:12]}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module   # dataclasses and pickling look a module up by name
            module_spec.loader.exec_module(module)
            return module
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.append(str(Path.cwd()))
        return importlib.import_module(target)
    except GeneratorError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import error is the spec's: one line naming it
        raise GeneratorError(f"--models {spec}: cannot import {target} ({type(exc).__name__}: {exc})") from exc


def python_generator(spec: str) -> PythonGenerator:
    """Import, call the factory, check what it returned; any problem is one line naming the spec."""
    rest, options = split_query(spec[len(PREFIX):], spec)
    target, sep, factory_name = rest.rpartition(":")
    if not sep or not target or not factory_name.isidentifier():
        raise GeneratorError(f"--models {spec}: expected python:MODULE:FACTORY[?k=v&...] (MODULE dotted or a .py "
                             "file)")
    module = _import(target, spec)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise GeneratorError(f"--models {spec}: {target} has no callable {factory_name!r}")
    try:
        made = factory(**options)
    except Exception as exc:  # noqa: BLE001 - the factory's failure is the spec's: exit 2 before any work
        raise GeneratorError(f"--models {spec}: {factory_name}({', '.join(f'{k}={v!r}' for k, v in options.items())}) "
                             f"raised {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(made, "generate", None)) and not callable(made):
        raise GeneratorError(f"--models {spec}: {factory_name} returned {type(made).__name__}, which has no "
                             "generate(prompts, seeds, sampling) and is not a callable (prompt, seed, sampling)")
    source = Path(module.__file__) if getattr(module, "__file__", None) else None
    name = rest if not options else spec[len(PREFIX):]
    return PythonGenerator(spec, f"python:{name}", rest, options, made, source)
