"""`python:MODULE:FACTORY[?k=v&...]`: a researcher's own Python code as a Generator. MODULE is a dotted module
name (importable, or from the working directory) or a .py file; FACTORY(**options) is called once, before any
work, and returns either an object with `generate(prompts, seeds, sampling) -> list of videos` (optional:
`fingerprint()`, `max_batch`, `fps`) or a plain callable `(prompt, seed, sampling) -> video`. A video is uint8
(T, H, W, 3) or floats in [0, 1] (numpy or torch); `sampling` has frames, height, width, steps, guidance, fps.
FLOPs are counted by FlopCounterMode around one real call (torch code); seconds and memory around each item.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import sys
from pathlib import Path

from benchmarks.core.errors import GenerationFailed, GeneratorError
from benchmarks.core.hashing import file_sha256, key_of
from benchmarks.generators.base import (
    Capabilities,
    Generation,
    Generator,
    is_interruption,
    split_query,
    user_failure,
)

PREFIX = "python:"


class PythonGenerator(Generator):
    """A factory's object or callable."""

    kind = "python"

    def __init__(self, spec: str, name: str, target: str, options: dict, made, source: Path | None,
                 capabilities: Capabilities):
        super().__init__(spec, name)
        self.target, self.options, self.made, self.source = target, options, made, source
        self.batched = callable(getattr(made, "generate", None))
        self.capabilities = capabilities
        self.module, self._fingerprint = None, None

    def fingerprint(self) -> dict:
        # computed once, when the spec is resolved (python_generator): the object's own fingerprint() is user code
        if self._fingerprint is None:
            own = getattr(self.made, "fingerprint", None)
            self._fingerprint = {"python": self.target, "options": self.options,
                                 "source": file_sha256(self.source) if self.source and self.source.is_file() else None,
                                 "sources": package_sources(self.module) if self.module else {},
                                 "option_files": option_files(self.options, self.spec),
                                 "object": own() if callable(own) else None}
        return self._fingerprint

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
            except BaseException as exc:  # noqa: BLE001 - one video's failure (sys.exit too) is its failed row
                if is_interruption(exc):
                    raise
                videos.append(GenerationFailed(user_failure(exc)))
        return Generation(videos)


MAX_OPTION_TREE_FILES = 2000   # an option naming a folder larger than this is refused, not hashed for minutes


def _install_locations() -> set[Path]:
    """Where the interpreter's own and installed packages live (their modules are not the user's package)."""
    import sysconfig

    paths = sysconfig.get_paths()
    return {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}


def package_sources(module) -> dict:
    """{path: SHA-256} of the source files local to a generator's module, so an edited helper changes the cache key:
    a package's every .py file (recursively); a loose module's folder's .py files and every module imported from
    under that folder. A module installed with the interpreter (stdlib, site-packages) is its own file only."""
    file = getattr(module, "__file__", None)
    if not file:
        return {}
    file = Path(file).resolve()
    package = getattr(module, "__package__", None) or ""
    top = sys.modules.get(package.split(".")[0]) if package else None
    if top is not None and getattr(top, "__path__", None) and getattr(top, "__file__", None):
        root, files = Path(top.__file__).resolve().parent, set(Path(top.__file__).resolve().parent.rglob("*.py"))
    else:
        root, files = file.parent, set(file.parent.glob("*.py"))
    if root in _install_locations():
        return {str(file): file_sha256(file)}
    harness = [Path(__file__).resolve().parents[2] / name for name in ("benchmarks", "evaluators")]
    for loaded in list(sys.modules.values()):   # helpers imported from under the root, in subfolders too
        path = getattr(loaded, "__file__", None)
        if path and path.endswith(".py") and Path(path).resolve().is_relative_to(root) \
                and not any(Path(path).resolve().is_relative_to(h) for h in harness):   # the harness is not theirs
            files.add(Path(path).resolve())
    return {str(f.relative_to(root)): file_sha256(f) for f in sorted(f.resolve() for f in files) if f.is_file()}


def option_files(options: dict, spec: str) -> dict:
    """{option: SHA-256} of the content of every option naming an existing file (a whole folder's tree), so a
    checkpoint overwritten in place changes the cache key."""
    from benchmarks.core.hashing import tree_sha256

    found = {}
    for key, value in options.items():
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        try:
            if path.is_file():
                found[key] = file_sha256(path)
            elif path.is_dir():
                n = sum(1 for p in path.rglob("*") if p.is_file())
                if n > MAX_OPTION_TREE_FILES:
                    raise GeneratorError(f"--models {spec}: option {key}={value} names a folder of {n} files, too "
                                         f"many to fingerprint (over {MAX_OPTION_TREE_FILES}); name the file it loads")
                found[key] = tree_sha256(path)
        except OSError as exc:
            raise GeneratorError(f"--models {spec}: option {key}={value}: cannot read ({exc.strerror or exc})") \
                from None
    return found


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
    except BaseException as exc:  # noqa: BLE001 - any import error (sys.exit too) is the spec's: one line naming it
        if is_interruption(exc):
            raise
        raise GeneratorError(f"--models {spec}: cannot import {target} ({user_failure(exc)})") from None


@contextlib.contextmanager
def _user_code(spec: str, what: str):
    """Run a user's code before any work: whatever it raises (sys.exit and argparse's exit included) is one line
    naming the spec, with the last line it wrote to stderr (argparse's error), exit 2; Ctrl-C / SIGTERM pass."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except GeneratorError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's code failing is the spec's problem, never exit 0 or 3
        if is_interruption(exc):
            raise
        said = (captured.getvalue().strip().splitlines() or [""])[-1].strip()
        raise GeneratorError(f"--models {spec}: {what} raised {user_failure(exc)}"
                             + (f" (it wrote: {said[:200]})" if said else "")) from None
    sys.stderr.write(captured.getvalue())   # on success what it wrote is shown as it was


def python_generator(spec: str) -> PythonGenerator:
    """Import, call the factory, check what it returned; any problem is one line naming the spec."""
    rest, options = split_query(spec[len(PREFIX):], spec)
    target, sep, factory_name = rest.rpartition(":")
    if not sep or not target or not factory_name.isidentifier():
        raise GeneratorError(f"--models {spec}: expected python:MODULE:FACTORY[?k=v&...] (MODULE dotted or a .py "
                             "file)")
    with _user_code(spec, f"importing {target}"):
        module = _import(target, spec)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise GeneratorError(f"--models {spec}: {target} has no callable {factory_name!r}")
    with _user_code(spec, f"{factory_name}({', '.join(f'{k}={v!r}' for k, v in options.items())})"):
        made = factory(**options)
    with _user_code(spec, f"the object {factory_name} returned"):
        batched = callable(getattr(made, "generate", None))
        if not batched and not callable(made):
            raise GeneratorError(f"--models {spec}: {factory_name} returned {type(made).__name__}, which has no "
                                 "generate(prompts, seeds, sampling) and is not a callable (prompt, seed, sampling)")
        capabilities = _capabilities(spec, made, batched)
    source = Path(module.__file__) if getattr(module, "__file__", None) else None
    name = rest if not options else spec[len(PREFIX):]
    generator = PythonGenerator(spec, f"python:{name}", rest, options, made, source, capabilities)
    generator.module = module
    with _user_code(spec, "fingerprint()"):
        fingerprint = generator.fingerprint()
        try:   # it keys the cache: JSON, finite, as written
            json.dumps(fingerprint, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise GeneratorError(f"--models {spec}: fingerprint() must return JSON (text, finite numbers, lists, "
                                 f"objects): {exc}") from None
    return generator


def _capabilities(spec: str, made, batched: bool) -> Capabilities:
    """The object's `max_batch` and `fps`, checked against the bounds table (a refusal names the spec)."""
    from benchmarks.core.flags import ADAPTER_OPTION_BOUNDS, BOUNDS

    max_batch, fps = getattr(made, "max_batch", None), getattr(made, "fps", None)
    try:
        if max_batch is not None:
            BOUNDS[ADAPTER_OPTION_BOUNDS["max_batch"]].check(max_batch, f"--models {spec}: max_batch")
        if fps is not None:
            fps = BOUNDS[ADAPTER_OPTION_BOUNDS["fps"]].check(fps, f"--models {spec}: fps")
    except ValueError as exc:
        raise GeneratorError(str(exc)) from None
    return Capabilities(max_batch=(max_batch or None) if batched else 1, fps=fps)
