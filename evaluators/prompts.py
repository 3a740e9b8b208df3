"""Prompt suites in VBench's full_info layout, loaded and checked entry by entry.

A full_info file is a JSON list of entries {"prompt_en": str, "dimension": [str, ...], "auxiliary_info":
{dimension: {...}}} (the last two optional). Anything else is a PromptFileError naming the file and the entry, so
no evaluator ever meets a null prompt or a malformed auxiliary_info halfway through a run.
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_PROMPT_CHARS = 10_000  # VBench's longest prompt is ~300 characters; beyond this it is not a prompt


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file (and the entry)."""


def _entry_problem(entry, flag_dims: bool) -> str | None:
    """Why one full_info entry is unusable, or None."""
    if not isinstance(entry, dict):
        return f"expected an object, got {type(entry).__name__}"
    prompt = entry.get("prompt_en")
    if prompt is None:
        return "has no prompt_en" if "prompt_en" not in entry else "prompt_en is null"
    if not isinstance(prompt, str):
        return f"prompt_en is {type(prompt).__name__}, not text"
    if not prompt.strip():
        return "prompt_en is empty"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"prompt_en is {len(prompt)} characters (at most {MAX_PROMPT_CHARS})"
    if "\x00" in prompt or "/" in prompt:  # VBench names videos "<prompt>-<index>.mp4": a path separator can't be
        return "prompt_en holds a '/' or NUL, which no video file name can carry"
    if flag_dims and "dimension" in entry:
        dims = entry["dimension"]
        if not isinstance(dims, list) or not all(isinstance(d, str) and d for d in dims):
            return "dimension must be a list of dimension names"
    info = entry.get("auxiliary_info", {})
    if info is not None and not isinstance(info, dict):
        return f"auxiliary_info is {type(info).__name__}, not an object"
    for dim, value in (info or {}).items():
        if value is None:
            return f"auxiliary_info[{dim!r}] is null"
    return None


def load_full_info(path, flag: str = "--prompts", check_dimensions: bool = True) -> list[dict]:
    """Read and check a VBench full_info JSON file -> its entries (auxiliary_info always a dict). Every problem
    is a one-line PromptFileError naming `flag`, the file and the first bad entry (index and prompt)."""
    path = Path(path)
    where = f"{flag} {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise PromptFileError(f"{where}: is a directory, expected a full_info JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"{where}: cannot read ({type(exc).__name__}: {exc})") from exc
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise PromptFileError(f"{where}: JSON nested too deeply") from None
    if not isinstance(entries, list):
        raise PromptFileError(f"{where}: expected a JSON list of prompt entries, got {type(entries).__name__}")
    if not entries:
        raise PromptFileError(f"{where}: holds no prompt entries")
    for index, entry in enumerate(entries):
        problem = _entry_problem(entry, check_dimensions)
        if problem:
            label = entry.get("prompt_en") if isinstance(entry, dict) and isinstance(entry.get("prompt_en"), str) \
                else None
            named = f" ({label[:60]!r})" if label else ""
            raise PromptFileError(f"{where}: entry {index}{named}: {problem}")
    return [{**entry, "auxiliary_info": entry.get("auxiliary_info") or {}} for entry in entries]


def merge_by_prompt(entries: list[dict], path=None, flag: str = "--prompts") -> list[dict]:
    """One entry per prompt, in first-seen order, as VBench looks prompts up per dimension (`load_dimension_info`):
    VBench_full_info.json lists two prompts twice, once for appearance_style and once for the three overall
    dimensions, and a video of such a prompt serves both. The `dimension` lists are joined and `auxiliary_info`
    (keyed by dimension) merged; the same dimension given different auxiliary_info is ambiguous and refused."""
    merged: dict = {}
    for index, entry in enumerate(entries):
        prompt = entry["prompt_en"]
        if prompt not in merged:
            merged[prompt] = {**entry, "auxiliary_info": dict(entry.get("auxiliary_info") or {})}
            if "dimension" in entry:
                merged[prompt]["dimension"] = list(entry["dimension"])
            continue
        earlier = merged[prompt]
        for dim, info in (entry.get("auxiliary_info") or {}).items():
            if dim in earlier["auxiliary_info"] and earlier["auxiliary_info"][dim] != info:
                raise PromptFileError(f"{flag} {path}: entry {index} ({prompt[:60]!r}) repeats an earlier prompt with "
                                      f"different auxiliary_info[{dim!r}]; a video of it could not be matched to one")
            earlier["auxiliary_info"][dim] = info
        if "dimension" in entry or "dimension" in earlier:
            dims = earlier.get("dimension", [])
            earlier["dimension"] = dims + [d for d in entry.get("dimension", []) if d not in dims]
        for key, value in entry.items():   # any other field of a later entry (e.g. a world kind) fills a gap only
            earlier.setdefault(key, value)
    return list(merged.values())


def prompts_by_text(entries: list[dict], path=None, flag: str = "--prompts") -> dict:
    """{prompt_en: entry}, repeated prompts merged per dimension (`merge_by_prompt`)."""
    return {entry["prompt_en"]: entry for entry in merge_by_prompt(entries, path, flag)}
