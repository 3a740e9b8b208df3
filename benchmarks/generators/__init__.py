"""Generators: every model of a run, behind one protocol (benchmarks/generators/base.py). A model spec names one:

  m4v-tiny, DIR                  a shipped denoiser or a save_pretrained / `m4v-bench train` directory (shipped.py)
  reconstruction:VAE             the world's true videos through a VAE: the ceiling (reconstruction.py)
  control:KIND[?of=SPEC]         a validity floor: static, first-frame, noise, shuffled-prompts (controls.py)
  python:MODULE:FACTORY[?k=v]    a researcher's Python code (python_adapter.py)
  diffusers:PATH[?k=v]           a diffusers text-to-video pipeline saved on disk (diffusers_adapter.py)
  cmd:TEMPLATE                   a command writing one mp4 per call (command.py)

`resolve_generators` checks every spec before any work (a bad one is one line naming it, exit 2);
`register_generator(prefix, make)` adds a kind.
"""

from __future__ import annotations

from benchmarks.core.errors import GenerationFailed, GeneratorError  # noqa: F401 - the protocol, re-exported
from benchmarks.generators.base import (  # noqa: F401
    Capabilities,
    Generation,
    Generator,
    batch_seed,
    check_frames,
    per_video_seed,
)

CONTROL_KINDS = ("static", "first-frame", "noise", "shuffled-prompts")


def _python(spec, context):
    from benchmarks.generators.python_adapter import python_generator

    return python_generator(spec)


def _diffusers(spec, context):
    from benchmarks.generators.diffusers_adapter import diffusers_generator

    return diffusers_generator(spec)


def _command(spec, context):
    from benchmarks.generators.command import command_generator

    return command_generator(spec)


def _reconstruction(spec, context):
    from benchmarks.generators.reconstruction import reconstruction_generator

    return reconstruction_generator(spec, context["vae"], context["text_encoder"])


def _control(spec, context):
    from benchmarks.generators.controls import control_generator

    return control_generator(spec, context["resolve"], context["models"])


# prefix -> make(spec, context); a spec with none of them is a shipped name or a checkpoint directory
REGISTRY = {"python:": _python, "diffusers:": _diffusers, "cmd:": _command, "reconstruction:": _reconstruction,
            "control:": _control}


def register_generator(prefix: str, make) -> None:
    """A new kind of model spec: `make(spec, context) -> Generator` for specs starting with `prefix`."""
    if not prefix.endswith(":"):
        raise ValueError(f"a generator prefix ends with ':', got {prefix!r}")
    REGISTRY[prefix] = make


def resolve_generator(spec: str, vae: str = "vae-tiny", text_encoder: str = "text-tiny", models=(),
                      memo: dict | None = None) -> Generator:
    """One spec -> its Generator, checked (files exist, the factory ran, the pipeline loaded)."""
    memo = {} if memo is None else memo
    if spec in memo:
        return memo[spec]

    def resolve(other):
        return resolve_generator(other, vae, text_encoder, models, memo)

    context = {"vae": vae, "text_encoder": text_encoder, "models": list(models), "resolve": resolve}
    if not isinstance(spec, str) or not spec.strip():
        raise GeneratorError(f"--models {spec!r}: an empty model spec")
    make = next((m for prefix, m in REGISTRY.items() if spec.startswith(prefix)), None)
    if make is None:
        from benchmarks.generators.shipped import checkpoint_generator

        generator = checkpoint_generator(spec, vae, text_encoder)
    else:
        generator = make(spec, context)
    memo[spec] = generator
    return generator


def resolve_generators(specs, vae: str = "vae-tiny", text_encoder: str = "text-tiny",
                       controls=()) -> list[Generator]:
    """The run's models (and `control:KIND` for each of `controls`) -> Generators with unique names; a spec
    given twice is one generator under two names. Every spec is checked before any work.

    A name is a function of the spec, never of its position: where two different specs would share one name (two
    `cmd:` specs of one script, two directories of one name) each of them gains `#` and a short hash of its spec,
    so swapping the order of the models between two runs never swaps their names (compare pairs by name)."""
    import copy

    from benchmarks.core.hashing import key_of

    specs = list(specs) + [f"control:{c}" for c in controls if f"control:{c}" not in specs]
    unknown = [c for c in controls if c not in CONTROL_KINDS]
    if unknown:
        raise GeneratorError(f"--controls {unknown[0]}: unknown control; one of {', '.join(CONTROL_KINDS)}")
    memo = {}
    resolved = [(spec, resolve_generator(spec, vae, text_encoder, specs, memo)) for spec in specs]
    sharing: dict = {}
    for spec, generator in resolved:
        sharing.setdefault(generator.name, set()).add(spec)
    generators, given = [], {}
    for spec, generator in resolved:
        name = generator.name if len(sharing[generator.name]) == 1 else f"{generator.name}#{key_of(spec)[:8]}"
        given[spec] = given.get(spec, 0) + 1
        if given[spec] > 1:   # the same spec again: the same weights under another name (rows are per name)
            name = f"{name}#{given[spec]}"
        if name != generator.name:
            generator = copy.copy(generator)
            generator.name = name
        generators.append(generator)
    return generators
