"""Writing results without losing work: atomic files, a lock per output directory, a completeness marker.

Every command writes through these: a file appears whole or not at all (temp file in the same directory,
fsync, rename), two runs into one directory cannot interleave (an exclusive `fcntl` lock, released by the OS
when the process dies, so a SIGKILL leaves no stale lock), and a run is marked complete only when all its
files are in place (`COMPLETE` is written last and removed when a new run starts).
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path

from benchmarks.core.errors import OutputError
from m4v.file_hash import read_sha256

LOCK_NAME, COMPLETE_NAME = ".lock", "COMPLETE"
# `train`'s OUT/snapshots/step-NNNNNN: what the run would save at that step. Mid-schedule weights: the LR has not
# decayed there as it would in a run of that many steps, so a snapshot is a point on one run's curve, not a shorter run.
SNAPSHOT_DIR = "snapshots"


def snapshot_dir(run, step: int) -> Path:
    """RUN/snapshots/step-NNNNNN: where `train` saves the model of that step."""
    return Path(run) / SNAPSHOT_DIR / f"step-{step:06d}"


_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give: mkstemp's 0600 would hide results from other users


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` via a temp file in the same directory, fsync, rename: never a partial file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write ({exc.strerror or exc})") from exc
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise OutputError(f"{path}: cannot write ({reason}); nothing already written was changed") from exc
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def json_safe(value):
    """NaN / inf -> None recursively (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False, default=str) + "\n")


def atomic_write_csv(path, df) -> Path:
    return atomic_write_text(path, df.to_csv(index=False))


def prepare_output_dir(path, flag: str = "--out") -> Path:
    """Create `path` (and parents) or fail before any work with a one-line error naming the flag."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputError(f"{flag} {path}: not writable ({exc.strerror or exc})") from exc
    return path


# A run owns its directory (`claim_run_dir`): the hidden marker names the suite whose outputs are there; these are
# the names a run writes (with paper_*), cleared before a run writes its own; `cache` stays: it is content-addressed,
# valid for any run, and what makes a rerun resume.
RUN_MARKER = ".m4v-run.json"
RUN_OUTPUTS = ("COMPLETE", "per_video.csv", "summary.csv", "generation.csv", "results.json", "report.md",
               "report.html", "pareto.png", "m4v_eval_results.json", "m4v_eval_results_weights_unverified.json",
               "compare.csv", "compare.json", "compare.html",
               "table4.csv", "table4.json", "flops_curve.csv", "flops_curve.json", "flops_curve.png", "videos",
               "previews")
RUN_KEPT = ("cache",)


def _run_marker(directory: Path) -> str | None:
    """The suite named by a directory's run marker; None without one (or an unreadable one)."""
    try:
        suite = json.loads((directory / RUN_MARKER).read_text()).get("suite")
    except (OSError, ValueError, AttributeError):
        return None
    return suite if isinstance(suite, str) else None


def _owned(directory: Path) -> list[Path]:
    """What a run wrote into `directory`: the run output names and paper_* tables (never a name it does not write,
    so a file of the user's beside them is never taken for one)."""
    return [p for p in directory.iterdir() if p.name in RUN_OUTPUTS or p.name.startswith("paper_")]


def claim_run_dir(directory, suite: str, overwrite: bool = False, flag: str = "--out") -> Path:
    """Before any work: OUT may be new, empty, or a run directory of the same suite (resumed); a directory holding
    another suite's run, or files no run wrote, is refused without `overwrite` (one line naming what is there).
    -> the directory, created and writable (prepare_output_dir); `own_run_dir` clears and marks it at the end."""
    directory = Path(directory)
    if directory.is_dir():
        marker = _run_marker(directory)
        owned = {p.name for p in _owned(directory)}
        held = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
        foreign = [name for name in held if name not in owned and name not in RUN_KEPT]
        if marker not in (None, suite) and any(name not in RUN_KEPT for name in held) and not overwrite:
            raise OutputError(f"{flag} {directory}: holds the outputs of another suite's run ({marker}); "
                              "--overwrite replaces them, or use another directory")
        if foreign and marker is None and not overwrite:
            raise OutputError(f"{flag} {directory}: already holds {', '.join(foreign[:4])}"
                              f"{' ...' if len(foreign) > 4 else ''}, which no run wrote; --overwrite writes the "
                              "run beside them, or use another directory")
    return prepare_output_dir(directory, flag)


def own_run_dir(directory, suite: str, keep=()) -> None:
    """Just before a run writes its tables: remove every output an earlier run left that this one does not rewrite
    (none may stand beside the new COMPLETE): its files, previews, and the videos not in `keep` (this run's: paths
    relative to the directory, or absolute); the cache and anything no run wrote stay. Then mark the
    directory as this suite's. Nothing is removed before then: a run refused on its inputs changes nothing."""
    import shutil

    directory = Path(directory)
    keep = {(directory / p).resolve() for p in keep}
    for path in _owned(directory):
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        elif path.name == "videos":
            _remove_unlisted(path, keep)
        else:
            shutil.rmtree(path)
    atomic_write_json(directory / RUN_MARKER, {"suite": suite})


def _remove_unlisted(folder: Path, keep: set) -> None:
    """Remove the files under `folder` that are not in `keep` (resolved paths), then the folders left empty."""
    for path in sorted([*folder.rglob("*"), folder], key=lambda p: len(p.parts), reverse=True):   # files first
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.resolve() not in keep:
            path.unlink(missing_ok=True)


class OutputLock:
    """Exclusive lock on an output directory for one run; a second run refuses with one line."""

    def __init__(self, directory, flag: str = "--out"):
        self.directory, self.flag, self._fd = Path(directory), flag, None

    def __enter__(self) -> OutputLock:
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise OutputError(f"{self.flag} {self.directory}: another run is writing here (locked); wait for it "
                              "or use another directory") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def mark_incomplete(directory) -> None:
    """A run is starting: its directory no longer holds a complete result set."""
    (Path(directory) / COMPLETE_NAME).unlink(missing_ok=True)


def _output_files(directory: Path, names) -> list[Path]:
    """The files a run lists as its outputs: each listed file, and every file under a listed folder (videos/)."""
    found = []
    for name in names:
        path = directory / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return found


def mark_complete(directory, files: list[str]) -> None:
    """Written last: the run's files are all in place; each one's SHA-256 (files under a listed folder too), so a
    reader can tell a file changed after the run completed (`completion_problem`)."""
    directory = Path(directory)
    digests = {str(p.relative_to(directory)): read_sha256(p) for p in _output_files(directory, files)}
    atomic_write_json(directory / COMPLETE_NAME, {"files": sorted(files), "sha256": digests})


def completion_problem(directory, needed=("per_video.csv", "summary.csv", "results.json")) -> str | None:
    """Why a completed run's outputs are not what it wrote, or None: a file COMPLETE lists that changed, or one of
    `needed` that is gone (a run committed without its videos is still read; its tables never). A COMPLETE written
    before digests existed is taken as it is (there is nothing to check it against)."""
    directory = Path(directory)
    try:
        digests = json.loads((directory / COMPLETE_NAME).read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return f"{directory / COMPLETE_NAME}: not a readable completion record"
    if digests is None:
        return None
    if not isinstance(digests, dict):
        return f"{directory / COMPLETE_NAME}: key 'sha256' is not an object"
    for name, digest in sorted(digests.items()):
        path = directory / name
        if not path.is_file():
            if name in needed:
                return f"{path}: listed in {COMPLETE_NAME} but gone (the run's files changed after it completed)"
            continue
        if read_sha256(path) != digest:
            return f"{path}: changed after the run completed (its SHA-256 is not the one {COMPLETE_NAME} recorded)"
    return None


def is_complete(directory) -> bool:
    return (Path(directory) / COMPLETE_NAME).is_file()


def markdown_cell(value) -> str:
    """`value` as one markdown table cell: `|` escaped, line breaks as spaces, HTML's `&` `<` `>` as entities."""
    # An unescaped `|` splits the cell in two and shifts every later column; a newline ends the row; markdown renders
    # raw HTML, so a model name or prompt holding a tag would become one (entities render as the characters)
    text = " ".join(str(value).splitlines()).replace("|", "\\|")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_row(cells) -> str:
    """A markdown table row of these cells, each escaped (markdown_cell)."""
    return "| " + " | ".join(markdown_cell(c) for c in cells) + " |"
