"""Suites: small declarative definitions of a benchmark run (models x prompts x samples x sampling settings x
evaluators), built in or loaded from a user's TOML file. The runner (benchmarks/run/runner.py) reads them and
knows nothing else.

A TOML suite is the same fields as `Suite`, e.g.

    name = "my-suite"
    models = ["m4v-tiny", "runs/my-checkpoint"]   # generator specs (benchmarks/generators/)
    prompts = "world"          # world | vbench | a VBench full_info JSON path
    per_kind = 2               # world prompts per kind (8 kinds)
    samples = 1                # videos per prompt (VBench: 5); sample i is generated with seed + i
    evaluators = ["world_colour_shape", "clip_score", "compute"]   # default: every one that can run
    [sampling]
    frames = 16
    steps = [8, 8, 8]
    guidance = 4.0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.core.errors import SuiteError

SUITE_KINDS = ("generate", "external", "table4", "flops-curve", "wan-flops")
SHIPPED_DENOISERS = ["m4v-tiny", "m4v-tiny-reward", "dit-tiny"]
WORLD_SUITE_SEED = 1  # the training data uses other seeds (m4v/recipes): the world suite is held out


@dataclass(frozen=True)
class Sampling:
    """How each video is generated (the tiny models' defaults: 16 frames at 64x64, 8 Euler steps per stage)."""

    frames: int = 16
    height: int = 64
    width: int = 64
    steps: tuple = (8, 8, 8)
    guidance: float = 4.0
    fps: int = 8


@dataclass(frozen=True)
class Suite:
    """One benchmark definition; `full` holds the field overrides of its --full (committed-results) size."""

    name: str
    description: str = ""
    kind: str = "generate"
    models: tuple = tuple(SHIPPED_DENOISERS)
    prompts: str = "world"
    per_kind: int = 4
    prompt_limit: int | None = None
    prompt_dimension: str | None = None      # only the prompts tagged for this VBench dimension
    samples: int = 1
    # more samples for the prompts of some dimensions (VBench: 25 for temporal_flickering, whose static filter keeps
    # 5 of them); a prompt tagged for several takes the largest
    samples_per_dimension: dict | None = None
    seed: int = 0
    batch: int = 16
    sampling: Sampling = field(default_factory=Sampling)
    evaluators: tuple | None = None           # None: every registered evaluator whose backbones are at hand
    backbones: tuple = ()                     # KIND=MODEL:PATH specs on top of the shipped defaults
    vae: str = "vae-tiny"
    text_encoder: str = "text-tiny"
    primary_metric: str | None = None         # the quality axis of report.md / pareto.png (None: VBench Total)
    paper_table: str | None = None            # table3/4/5: models fill its rows (benchmarks/paper/paper_tables)
    controls: tuple | None = None             # validity floors added to the models: static, first-frame, noise, ...
    full: dict = field(default_factory=dict)

    def with_overrides(self, **changes) -> Suite:
        """A copy with fields replaced (CLI flags, --full); unknown fields are an error naming them."""
        return _build(dataclasses.asdict(self) | changes, f"suite {self.name}")

    def definition(self) -> dict:
        """The plain dict that determines the results (provenance, cache keys, compare's settings check)."""
        d = dataclasses.asdict(self)
        d.pop("full")
        if d["controls"] is None:   # unset: the definition (and hash) of a suite made before controls existed
            d.pop("controls")
        return d

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True, default=list).encode()).hexdigest()[:16]


BUILT_IN: dict[str, Suite] = {}


def _register(suite: Suite) -> Suite:
    BUILT_IN[suite.name] = suite
    return suite


_register(Suite(
    "quality-vs-compute",
    "the shipped tiny denoisers over the held-out world prompt suite: every offline evaluator (VBench dimensions "
    "with their labelled substitutes, world checks, CLIP score, frame consistency) beside generation compute",
    per_kind=8, primary_metric="world_colour_shape", full={"per_kind": 20}))
_register(Suite(
    "vbench-standard", "VBench's own prompt suite (vbench's VBench_full_info.json), 5 samples per prompt (25 for the "
    "temporal_flickering prompts, as VBench's prompts/README.md), each dimension on its own prompts",
    models=("m4v-tiny",), prompts="vbench", samples=5, samples_per_dimension={"temporal_flickering": 25}))
_register(Suite(
    "vbench-fast", "the paper's fast protocol (Table 3): 50 VBench prompts (the first 50 of its overall-"
    "consistency set); Overall Consistency, Aesthetic Quality, Imaging Quality", models=("m4v-tiny",),
    prompts="vbench", prompt_dimension="overall_consistency", prompt_limit=50,
    evaluators=("overall_consistency", "aesthetic_quality", "imaging_quality", "compute")))
_register(Suite(
    "paper-table3", "the paper's Table 3 ablation at toy scale: five variants trained at an equal budget (--models in "
    "row order: none, +text re-composition, +registers, both, both + temporal branch) on the world suite; the fast "
    "protocol's metrics and the world checks, each row's paired difference from the full model",
    models=(), per_kind=8, primary_metric="world_colour_shape", paper_table="table3", full={"per_kind": 20}))
_register(Suite(
    "paper-table4", "the paper's Table 4 at toy scale: four architectures trained at an equal budget (--models in "
    "row order: full attention, parallel, pure Mamba, M4V): quality, generation seconds and mixer TFLOPs per video, "
    "beside the paper-size mixer TFLOPs", models=(), per_kind=8, primary_metric="world_colour_shape",
    paper_table="table4", full={"per_kind": 20}))
_register(Suite(
    "paper-table5", "the paper's Table 5 reward-learning row at toy scale: m4v-tiny against m4v-tiny-reward on the "
    "world suite, paired; the synthetic-data row needs data that cannot be made offline",
    models=("m4v-tiny", "m4v-tiny-reward"), per_kind=3, primary_metric="world_colour_shape", paper_table="table5",
    full={"per_kind": 20}))
_register(Suite(
    "wan-tiny-table", "the paper's Tables 1/2 at toy scale: wan-tiny (Wan2.1's architecture, whole-latent flow "
    "matching) and m4v-wan-tiny (every self-attention an MM-DiM, fine-tuned from it) beside the shipped pyramidal "
    "m4v-tiny and dit-tiny on the world suite: quality with intervals, seconds and TFLOPs per video",
    models=("wan-tiny", "m4v-wan-tiny", "m4v-tiny", "dit-tiny"), per_kind=8, primary_metric="world_colour_shape",
    full={"per_kind": 20}))
_register(Suite("paper-table4-flops", "Table 4's compute column: mixer TFLOPs of the four architectures at paper "
                "size (meta device, fvcore and FlopCounterMode)", kind="table4", models=()))
_register(Suite("flops-curve", "mixer TFLOPs of full attention vs M4V over frame counts and resolutions (Fig. 1)",
                kind="flops-curve", models=()))
_register(Suite("wan-flops", "self-mixer and total TFLOPs of Wan2.1 and M4V*(Wan2.1) at 1.3B / 14B, 480p / 720p, "
                "81 frames, one forward (meta device), beside the paper's Table 2 seconds", kind="wan-flops",
                models=()))
_register(Suite("external", "a folder of videos made elsewhere (--videos DIR, optional --prompts FULL_INFO.json): "
                "every evaluator that applies", kind="external", models=(), prompts=""))
DEFAULT_SUITE = "quality-vs-compute"


def get_suite(name: str) -> Suite:
    if name not in BUILT_IN:
        raise SuiteError(f"unknown suite {name!r}; built in: {', '.join(BUILT_IN)} (or --suite FILE.toml)")
    return BUILT_IN[name]


_TYPES = {"name": str, "description": str, "kind": str, "prompts": str, "per_kind": int, "prompt_limit": int,
          "prompt_dimension": str, "samples": int, "seed": int, "batch": int, "vae": str, "text_encoder": str,
          "primary_metric": str}
# numeric keys -> their entry of the one bounds table (benchmarks/core/flags.py), which the matching flags use too
_BOUNDED = {"per_kind": "per_kind", "prompt_limit": "prompt_limit", "samples": "samples", "batch": "batch",
            "seed": "seed"}
_SAMPLING_BOUNDS = {"frames": "frames", "height": "side", "width": "side", "fps": "fps"}


def _bounded(where: str, key: str, value, bound: str):
    """`value` of `key` checked against its entry of the bounds table: -> it, or a SuiteError with the bound."""
    from benchmarks.core.flags import BOUNDS

    try:
        return BOUNDS[bound].check(value, f"{where}: key '{key}'")
    except ValueError as exc:
        raise SuiteError(str(exc)) from None


def _check_type(where: str, key: str, value, kind):
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SuiteError(f"{where}: key '{key}' must be an integer, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SuiteError(f"{where}: key '{key}' must be a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise SuiteError(f"{where}: key '{key}' must be a string, got {value!r}")
    return value


def _sampling(where: str, raw) -> Sampling:
    if isinstance(raw, Sampling):
        return raw
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: key 'sampling' must be a table")
    known = {f.name for f in dataclasses.fields(Sampling)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key 'sampling.{unknown[0]}' (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in raw.items():
        if key == "steps":
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise SuiteError(f"{where}: key 'sampling.steps' must be 3 positive integers (one per pyramid "
                                 f"stage), got {value!r}"[:300])
            values[key] = tuple(_bounded(where, f"sampling.steps[{i}]", s, "sampling_steps")
                                for i, s in enumerate(value))
        elif key == "guidance":
            values[key] = _bounded(where, "sampling.guidance", value, "suite_guidance")
        else:
            _bounded(where, f"sampling.{key}", value, _SAMPLING_BOUNDS[key])
            if isinstance(value, float):   # a suite's fps is a whole number: an int keeps the suite's hash
                raise SuiteError(f"{where}: key 'sampling.{key}' must be a whole number, got {value!r}")
            values[key] = value
    sampling = Sampling(**values)
    if sampling.height % 32 or sampling.width % 32:
        raise SuiteError(f"{where}: sampling.height / width must be multiples of 32 (the VAE's 8x times the "
                         f"pyramid's 4x), got {sampling.height}x{sampling.width}")
    return sampling


def _build(raw: dict, where: str) -> Suite:
    known = {f.name for f in dataclasses.fields(Suite)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SuiteError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    if "name" not in raw:
        raise SuiteError(f"{where}: missing key 'name'")
    values = dict(raw)
    for key, kind in _TYPES.items():
        if values.get(key) is not None and key not in _BOUNDED:   # a bounded key: its bound says the type too
            _check_type(where, key, values[key], kind)
    for key, bound in _BOUNDED.items():
        if values.get(key) is not None:
            _bounded(where, key, values[key], bound)
    if values.get("paper_table") not in (None, "table3", "table4", "table5"):
        raise SuiteError(f"{where}: key 'paper_table' must be table3, table4 or table5, got {values['paper_table']!r}")
    if values.get("kind", "generate") not in SUITE_KINDS:
        raise SuiteError(f"{where}: key 'kind' must be one of {SUITE_KINDS}, got {values['kind']!r}")
    for key in ("models", "evaluators", "backbones", "controls"):
        if values.get(key) is not None:
            if not isinstance(values[key], (list, tuple)) or not all(isinstance(v, str) for v in values[key]):
                raise SuiteError(f"{where}: key '{key}' must be a list of strings, got {values[key]!r}")
            values[key] = tuple(values[key])
    if "sampling" in values:
        values["sampling"] = _sampling(where, values["sampling"])
    if values.get("controls") is not None:
        from benchmarks.generators import CONTROL_KINDS

        unknown = [c for c in values["controls"] if c not in CONTROL_KINDS]
        if unknown:
            raise SuiteError(f"{where}: key 'controls': unknown {unknown} (known: {', '.join(CONTROL_KINDS)})")
    if values.get("samples_per_dimension") is not None:
        per_dim = values["samples_per_dimension"]
        if not isinstance(per_dim, dict):
            raise SuiteError(f"{where}: key 'samples_per_dimension' must be a table of dimension = samples")
        for dim, n in per_dim.items():
            from evaluators import EVALUATORS

            if dim not in EVALUATORS:
                raise SuiteError(f"{where}: key 'samples_per_dimension.{dim}': unknown dimension")
            _bounded(where, f"samples_per_dimension.{dim}", n, "samples")
        values["samples_per_dimension"] = dict(per_dim)
    if "full" in values and not isinstance(values["full"], dict):
        raise SuiteError(f"{where}: key 'full' must be a table of overrides")
    if values.get("full"):   # checked now, not when --full is first used
        _build({**values, **values["full"], "full": {}}, f"{where}: key 'full'")
    if values.get("evaluators") is not None:
        from evaluators import EVALUATORS

        unknown = [e for e in values["evaluators"] if e not in EVALUATORS]
        if unknown:
            raise SuiteError(f"{where}: key 'evaluators': unknown {unknown} (known: {', '.join(sorted(EVALUATORS))})")
    return Suite(**values)


def load_suite_file(path) -> Suite:
    """A user's suite from a TOML file; any problem is one line naming the file and the key."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SuiteError(f"--suite {path}: cannot read ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"--suite {path}: not valid TOML ({exc})") from exc
    except (RecursionError, UnicodeDecodeError) as exc:   # an array nested thousands deep, bytes that are not text
        raise SuiteError(f"--suite {path}: not a usable TOML file ({type(exc).__name__})") from None
    where = f"--suite {path}"
    for key in ("models", "evaluators"):   # an empty list would run nothing and still write tables
        if raw.get(key) == []:
            raise SuiteError(f"{where}: key '{key}' is empty (name at least one, or leave the key out for the default)")
    primary = raw.get("primary_metric")
    if isinstance(primary, str) and primary not in PRIMARY_METRICS:
        from evaluators import EVALUATORS

        if primary not in EVALUATORS:
            raise SuiteError(f"{where}: key 'primary_metric': unknown {primary!r} (an evaluator name or one of "
                             f"{', '.join(PRIMARY_METRICS)})")
    suite = _build(raw, where)
    _check_named_files(where, suite, raw)
    return suite


# What a model directory a suite names must hold: checked before any work, so a directory such as /usr/lib is refused
# at once instead of being hashed whole for a cache key first.
MODEL_FILES = {"vae": ("config.json", "model.safetensors"),
               "text_encoder": ("t5/config.json", "t5/model.safetensors", "clip_text/config.json",
                                "clip_text/model.safetensors")}


def _check_named_files(where: str, suite: Suite, raw: dict) -> None:
    """The directories and files a TOML suite names (vae, text_encoder, backbones) are what the keys say; a problem
    is one line naming the file and the key as written."""
    from evaluators.backbone_loading import parse_backbone

    for key in (k for k in MODEL_FILES if k in raw):
        from m4v.checkpoint import WEIGHTS_DIR

        value = getattr(suite, key)
        directory = Path(value) if Path(value).is_dir() else WEIGHTS_DIR / value
        missing = [name for name in MODEL_FILES[key] if not (directory / name).is_file()]
        if missing:
            raise SuiteError(f"{where}: key '{key}': {value!r} is not a {key.replace('_', ' ')} directory (no "
                             f"{', '.join(missing)} in {directory})")
    for spec in suite.backbones if "backbones" in raw else ():
        try:
            parse_backbone(spec)
        except (ValueError, OSError) as exc:   # its message names the spec (as --backbone, which it is not here)
            raise SuiteError(f"{where}: key 'backbones': {str(exc).removeprefix('--backbone ')}") from None


# summary.csv columns a suite may name as its quality axis besides the evaluators' own
PRIMARY_METRICS = ("vbench_total", "vbench_total_present", "vbench_quality", "vbench_quality_present",
                   "vbench_semantic", "vbench_semantic_present")


def load_full_info(path, flag: str = "--prompts") -> list[dict]:
    """A VBench full_info JSON, every entry checked (evaluators/prompts.py); problems are SuiteErrors."""
    from evaluators.prompts import PromptFileError
    from evaluators.prompts import load_full_info as load_checked

    try:
        return load_checked(path, flag)
    except PromptFileError as exc:
        raise SuiteError(str(exc)) from exc


def vbench_full_info_path() -> Path:
    """VBench's own prompt suite, shipped inside the vbench package (pip install --no-deps vbench==0.1.5)."""
    import importlib.util

    spec = importlib.util.find_spec("vbench")
    path = Path(spec.origin).parent / "VBench_full_info.json" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SuiteError("prompts = 'vbench' needs VBench_full_info.json from the vbench package "
                         "(pip install --no-deps vbench==0.1.5), or give the file's path as prompts")
    return path


def samples_of(suite: Suite, entry: dict) -> int:
    """How many videos the suite makes of a prompt: `samples`, or more where a dimension it is tagged for asks."""
    extra = [n for dim, n in (suite.samples_per_dimension or {}).items() if dim in entry.get("dimension", [])]
    return max([suite.samples, *extra])


def prompt_entries(suite: Suite) -> list[dict]:
    """The suite's prompts as VBench full_info entries (the world's carry their scene in auxiliary_info)."""
    # A prompt names its videos (`<prompt>-<i>.mp4`) and pairs samples across runs: each appears once.
    if suite.prompts == "world":
        from m4v.world.captions import prompt_suite

        entries = prompt_suite(suite.per_kind, seed=WORLD_SUITE_SEED, n_frames=suite.sampling.frames)
        # the world's object-class kind has only four captions, so a larger suite repeats them: the first is kept
        entries = list({e["prompt_en"]: e for e in reversed(entries)}.values())[::-1]
    else:
        from evaluators.prompts import PromptFileError, merge_by_prompt

        path = vbench_full_info_path() if suite.prompts == "vbench" else suite.prompts
        listed = load_full_info(path, "prompts")
        try:   # VBench's per-dimension lookup: a prompt listed under two dimensions is one video scored on both
            entries = merge_by_prompt(listed, path, "prompts")
        except PromptFileError as exc:
            raise SuiteError(str(exc)) from exc
        if suite.prompt_dimension:   # in the order VBench lists that dimension's prompts (its file order)
            by_text = {e["prompt_en"]: e for e in entries}
            entries = [by_text[p] for p in dict.fromkeys(e["prompt_en"] for e in listed
                                                         if suite.prompt_dimension in e.get("dimension", []))]
    if suite.prompt_dimension:
        entries = [e for e in entries if suite.prompt_dimension in e.get("dimension", [])]
    return entries[: suite.prompt_limit] if suite.prompt_limit else entries
