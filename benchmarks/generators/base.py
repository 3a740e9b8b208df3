"""The Generator protocol: what the runner knows about any text-to-video model.

A Generator says what determines its output (`fingerprint()`: weight hashes, dtype, every call argument; it keys
the cache and is recorded in the provenance), what it can do (`capabilities`) and makes videos
(`generate(prompts, seeds, sampling) -> Generation`). Every model of a run is one: the shipped denoisers and
save_pretrained directories, `reconstruction:`, the controls, and the python / diffusers / cmd adapters.

Seeds. A generator that honours a seed per video (`per_video_seeds`, every adapter and control) gets, for the
video of prompt p (its index in the suite's prompt list) and sample i, seed = suite.seed + 100000 p + i
(VBench's rule): the video does not depend on the batch it was generated in, and its cache key holds no batch.
The shipped denoisers keep the rule their committed baselines were made with: batch b of sample i is generated
with seed = suite.seed + 1000 i + b, and the key holds the batch.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import numpy as np

from benchmarks.core.errors import GenerationFailed, GeneratorError

PER_VIDEO_SEED_STRIDE = 100000   # seed = suite.seed + 100000 * prompt index + sample (VBench's rule)
BATCH_SEED_STRIDE = 1000         # shipped: seed = suite.seed + 1000 * sample + batch index


def is_interruption(exc: BaseException) -> bool:
    """Ctrl-C, SIGTERM or a generator being closed: the process is being stopped, not a user's code failing (these
    end the run with 130 / 143, never 0 and never a failed row)."""
    from benchmarks.core.errors import Terminated

    return isinstance(exc, (KeyboardInterrupt, GeneratorExit, Terminated))


def user_failure(exc: BaseException) -> str:
    """One line for what a user's code raised: `sys.exit()` and any other BaseException included."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def debug_enabled() -> bool:
    """--debug (main sets M4V_DEBUG=1 for the command) or M4V_DEBUG=1: library noise is shown, tracebacks kept."""
    import os

    return os.environ.get("M4V_DEBUG") == "1"


@contextlib.contextmanager
def quiet_libraries():
    """Third-party warnings (diffusers' FutureWarnings) and progress bars off stderr unless --debug: a refusal is
    the one line that names the spec, with nothing before it."""
    if debug_enabled():
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def per_video_seed(base_seed: int, prompt_index: int, sample: int) -> int:
    """The seed of prompt `prompt_index`'s sample `sample` for generators that honour per-video seeds."""
    return base_seed + PER_VIDEO_SEED_STRIDE * prompt_index + sample


def batch_seed(base_seed: int, sample: int, batch_index: int) -> int:
    """The seed of batch `batch_index` of sample `sample` for the shipped denoisers (their baselines' rule)."""
    return base_seed + BATCH_SEED_STRIDE * sample + batch_index


@dataclass(frozen=True)
class Capabilities:
    """What a generator can do and how its compute is known."""

    max_batch: int | None = None     # prompts per generate() call (None: the suite's batch)
    per_video_seeds: bool = True     # honours one seed per video (else one seed per batch: the shipped rule)
    # "own": the generator measures its own compute (shipped: exact per-layout FLOPs, mixer split); "counted":
    # FlopCounterMode around one real call, seconds and memory around each call; "declined": seconds only, the
    # FLOPs declined with `compute_reason`; "none": not a generation (reconstruction, controls): no record
    compute: str = "counted"
    compute_reason: str = ""
    measures_memory: bool = True     # peak memory of this process is the generation's (not a subprocess')
    fps: float | None = None         # fixed by the generator (None: the suite's sampling.fps)
    device: str = "cpu"


@dataclass
class Generation:
    """One generate() call's output: uint8 (T, H, W, 3) videos (an exception where one video failed) and, for
    generators that measure themselves, each video's generation record."""

    videos: list
    records: list | None = None
    call: dict = field(default_factory=dict)   # the call's arguments, as passed


class Generator:
    """Base class: subclasses set `kind`, `capabilities` and implement fingerprint() and generate()."""

    kind = ""
    role = "model"          # "model", "floor" (controls) or "ceiling" (reconstruction): report.md's rows
    capabilities = Capabilities()

    def __init__(self, spec: str, name: str):
        self.spec, self.name = spec, name

    def fingerprint(self) -> dict:
        """What determines this generator's videos (JSON-able): the cache key and the provenance."""
        raise NotImplementedError

    def bind(self, entries: list[dict]) -> None:
        """The suite's prompt entries, before any generation (reconstruction reads the scenes, a control the
        suite's other prompts); raise GeneratorError when the generator cannot run on them."""

    def sampling_problem(self, sampling) -> str | None:
        """Why this generator cannot make videos of the suite's sampling settings, naming the `sampling.*` key (asked
        before any work), or None."""
        return None

    def generate(self, prompts: list[str], seeds: list[int], sampling) -> Generation:
        raise NotImplementedError

    def close(self) -> None:
        """Free what generate() loaded (the runner moves to the next model)."""

    def fps(self, sampling):
        """Frames per second of its videos: its own where fixed, else the suite's."""
        return self.capabilities.fps or sampling.fps

    def provenance(self) -> dict:
        """The results.json entry of this model: its spec, kind, role and fingerprint."""
        return {"spec": self.spec, "kind": self.kind, "role": self.role, "fingerprint": self.fingerprint()}


def split_query(rest: str, spec: str) -> tuple[str, dict]:
    """'PATH?k=v&k2=v2' -> ('PATH', {k: value}) with numbers and booleans parsed; a repeated or empty key is an
    error naming the spec."""
    target, _, query = rest.partition("?")
    options: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else []:
        if not key or key in options:
            raise GeneratorError(f"--models {spec}: option {key!r} given twice or empty")
        options[key] = parse_value(value)
    if query and not options:
        raise GeneratorError(f"--models {spec}: cannot read the options after '?' (expected k=v&k2=v2)")
    return target, options


def parse_value(text: str):
    """'5' -> 5, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", text):   # not 'nan' or 'inf': strings there
        return float(text)
    return text


def check_frames(frames, where: str) -> np.ndarray:
    """A generator's video as uint8 (T, H, W, 3): uint8 as is, floats in [0, 1] scaled and rounded; anything
    else (another shape or dtype, NaN, out of range) is a GenerationFailed naming `where` and the problem."""
    try:   # a user's tensor may live on the meta device, or be a subclass whose conversion raises
        if hasattr(frames, "detach"):   # a torch tensor
            frames = frames.detach().float().cpu().numpy() if frames.is_floating_point() else frames.cpu().numpy()
    except Exception as exc:  # noqa: BLE001 - whatever the tensor raises is this video's failure
        raise GenerationFailed(f"{where}: cannot read the frames ({user_failure(exc)})") from None
    if not isinstance(frames, np.ndarray):
        raise GenerationFailed(f"{where}: returned {type(frames).__name__}, not an array of frames")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) < 1:
        raise GenerationFailed(f"{where}: frames of shape {tuple(frames.shape)}, expected (T, H, W, 3)")
    from evaluators.video import MIN_SIDE  # eval's own rule for a file: a generated video meets the same

    if min(frames.shape[1:3]) < MIN_SIDE:
        raise GenerationFailed(f"{where}: frames are {frames.shape[2]}x{frames.shape[1]}, under the {MIN_SIDE} px per "
                               "side the evaluators need")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if not np.issubdtype(frames.dtype, np.floating):
        raise GenerationFailed(f"{where}: frames of dtype {frames.dtype}, expected uint8 or floats in [0, 1]")
    if not np.isfinite(frames).all():
        raise GenerationFailed(f"{where}: frames hold NaN or infinity")
    low, high = float(frames.min()), float(frames.max())
    if low < 0 or high > 1:
        raise GenerationFailed(f"{where}: float frames in [{low:.3g}, {high:.3g}], expected [0, 1]")
    return np.round(frames.astype(np.float64) * 255).astype(np.uint8)


def size_note(frames: np.ndarray, sampling) -> str:
    """'' when a video has the suite's frame count and size; else the note its rows carry (scored as made)."""
    t, h, w = frames.shape[:3]
    if (t, h, w) == (sampling.frames, sampling.height, sampling.width):
        return ""
    return (f"note: the generator made {t} frames at {w}x{h}; the suite asks {sampling.frames} at "
            f"{sampling.width}x{sampling.height}")


def finite_or_none(value):
    """A measured number for a JSON record: None where there is none (NaN is not JSON)."""
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
