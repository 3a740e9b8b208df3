"""Videos made elsewhere (the `external` suite, `m4v-bench eval`): a folder's video files and frame folders, the
prompt entry each one's VBench name `<prompt>-<index>.mp4` points to, and VBench's own results JSON."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evaluators.vbench.protocol import (
    SAMPLES_PER_DIMENSION,
    SAMPLES_PER_PROMPT,
    dimensions_reading,
    prompt_from_filename,
    samples_read,
)
from evaluators.vbench.scoring import NORMALIZATION
from evaluators.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

VBENCH_NAMING = re.compile(r"^(?P<prompt>.+)-(?P<index>[0-9]+)$", re.S)  # VBench: "<prompt>-<index>.mp4"


def discover_videos(directory: Path) -> list[Path]:
    """Video files and frame folders directly inside `directory`, sorted by name."""
    if not directory.is_dir():
        raise FileNotFoundError(f"--videos {directory}: not a directory")
    found = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):   # a hidden file: e.g. a partial video a killed writer left (never a result)
            continue
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(_named_in_text(directory, path))
        elif path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            found.append(_named_in_text(directory, path))
    if not found:
        raise FileNotFoundError(f"--videos {directory}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) or "
                                "folders of frames in it")
    return found


def _named_in_text(directory: Path, path: Path) -> Path:
    """`path`, whose name every table and report carries: refused before any scoring when it is not UTF-8."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"--videos {directory}: the name {os.fsencode(path.name)!r} is not UTF-8 text, which the "
                         "results (CSV, JSON, HTML) name each video in; rename it") from None
    return path


def name_of(path: Path) -> str:
    return path.stem if path.is_file() else path.name


@dataclass
class ExternalVideo:
    """One file `eval` scores: its prompt and prompt entry (the `dimension` list narrowed to the dimensions that read
    this index in standard mode; {} in custom-input mode) and its sample index (None when the name has none)."""

    path: Path
    prompt: str
    entry: dict
    sample: int | None


@dataclass
class Selection:
    """The files VBench's mode reads, and the ones it ignores by reason (file names)."""

    videos: list[ExternalVideo]
    ignored: dict[str, list[str]] = field(default_factory=dict)

    def ignored_line(self, flag: str) -> str | None:
        """The one line that says what was left out, or None."""
        total = sum(len(v) for v in self.ignored.values())
        if not total:
            return None
        parts = "; ".join(f"{len(names)} {reason}" for reason, names in self.ignored.items() if names)
        example = next(names[0] for names in self.ignored.values() if names)
        return (f"{flag}: {total} of {total + len(self.videos)} files ignored, as VBench's standard mode ignores "
                f"them ({parts}), e.g. {example!r}")


def sample_index(path: Path) -> int | None:
    match = VBENCH_NAMING.match(name_of(path))
    return int(match.group("index")) if match else None


def select_videos(paths: list[Path], prompts: dict | None) -> Selection:
    """The files VBench reads. Standard mode (`prompts`, a full_info JSON by prompt): `<prompt>-<i><suffix>` for a
    prompt of the JSON and i in range(5), range(25) for temporal_flickering's prompts, whose files past -4 serve
    temporal_flickering alone (its static filter's input); every other name is ignored. Custom-input mode (None):
    every file, the prompt from its name as VBench's get_prompt_from_filename."""
    if prompts is None:
        return Selection([ExternalVideo(p, prompt_from_filename(name_of(p)), {}, sample_index(p)) for p in paths])
    chosen, seen = [], {}
    ignored = {"not named <prompt>-<index> after a prompt of the JSON": [], "past the indices VBench reads of "
               f"their prompt (-0..-{SAMPLES_PER_PROMPT - 1}; -0..-{SAMPLES_PER_DIMENSION['temporal_flickering'] - 1}"
               " for temporal_flickering's)": [], "with the prompt and index of another file (VBench reads one "
               "suffix)": []}
    unnamed, past, repeated = ignored.values()
    for path in paths:
        prompt, dash, index = name_of(path).rpartition("-")   # VBench builds f"{prompt}-{i}{suffix}": no '-' in i
        entry = prompts.get(prompt) if dash else None
        if entry is None:
            unnamed.append(path.name)
            continue
        dims = entry.get("dimension", [])
        reads = max([samples_read(d) for d in dims] or [SAMPLES_PER_PROMPT])
        if index not in {str(i) for i in range(reads)}:   # "-01", "-5" of a 5-sample prompt: never looked up
            past.append(path.name)
            continue
        if (prompt, index) in seen:
            repeated.append(path.name)
            continue
        seen[prompt, index] = path
        sample = int(index)
        narrowed = {**entry, "dimension": dimensions_reading(dims, sample)} if "dimension" in entry else entry
        chosen.append(ExternalVideo(path, prompt, narrowed, sample))
    return Selection(chosen, ignored)


def vbench_results_json(per_video: pd.DataFrame, summary_row: dict, weights: str = "verified") -> dict:
    """VBench's `<name>_eval_results.json` layout: {dimension: [aggregate, [{video_path, video_results}, ...]]}.
    weights="verified": the faithfully computed dimensions only (VBench's algorithm, backbone and published
    weights; the others are not VBench numbers); "unverified": those computed with VBench's algorithm and
    backbone on weight files no published hash could confirm (written apart, never mixed with the first)."""
    from evaluators import EVALUATORS

    results = {}
    for dim in NORMALIZATION:
        if weights == "verified" and not summary_row.get(f"{dim}_faithful"):
            continue
        if weights == "unverified" and (summary_row.get(f"{dim}_faithful")
                                        or not summary_row.get(f"{dim}_algorithm_faithful")
                                        or summary_row.get(f"{dim}_weights") != "unverified"):
            continue
        part = per_video[(per_video["dimension"] == dim) & (per_video["status"] == "ok")]
        if weights == "unverified" and not all(EVALUATORS[dim].exact_with(b) for b in part["backbone"]):
            continue
        results[dim] = [summary_row[dim], [{"video_path": v, "video_results": s}
                                           for v, s in zip(part["video"], part["score"])]]
    return results
