"""Prompt suites in VBench's full_info layout, loaded and checked entry by entry.

A full_info file is a JSON list of entries {"prompt_en": str, "dimension": [str, ...], "auxiliary_info":
{dimension: {...}}} (the last two optional). Anything else is a PromptFileError naming the file and the entry, so
no evaluator ever meets a null prompt or a malformed auxiliary_info halfway through a run.
"""

from __future__ import annotations

import json
import math
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
        problem = _world_problem(value, entry) if dim == "world" else _schema_problem(value, AUX_SCHEMAS.get(dim))
        if problem:
            return f"auxiliary_info[{dim!r}]{problem}"
    return _video_fields_problem(entry)


# What each dimension reads from its auxiliary_info entry (VBench's full_info layout; "world" is m4v/world's scene,
# checked by _world_problem): a nested table of keys, TEXT a non-empty string, a key ending in "?" optional.
TEXT = "text"
AUX_SCHEMAS = {
    "object_class": {"object": TEXT},
    "multiple_objects": {"object": TEXT},
    "color": {"color": TEXT, "object?": TEXT},
    "appearance_style": {"appearance_style": TEXT},
    "scene": {"scene": {"scene": TEXT}},
    "spatial_relationship": {"spatial_relationship": {"object_a": TEXT, "object_b": TEXT, "relationship": TEXT}},
}


def _schema_problem(value, schema) -> str | None:
    """Where `value` departs from `schema` (a suffix such as "['scene']: expected ..."), or None (None schema: a
    dimension no evaluator reads, taken as is)."""
    if schema is None:
        return None
    if schema == TEXT:
        return None if isinstance(value, str) and value.strip() else f": expected a non-empty string, got {value!r:.60}"
    if not isinstance(value, dict):
        return f": expected an object with {', '.join(repr(k.rstrip('?')) for k in schema)}, got {value!r:.60}"
    for key, inner in schema.items():
        name = key.rstrip("?")
        if name not in value:
            if not key.endswith("?"):
                return f": missing {name!r}"
            continue
        problem = _schema_problem(value[name], inner)
        if problem:
            return f"[{name!r}]{problem}"
    return None


def _world_problem(world, entry: dict) -> str | None:
    """Why a world scene (m4v/world/scene.py Scene.to_dict) cannot be read back, or None."""
    from m4v.world.captions import KINDS
    from m4v.world.scene import BACKGROUNDS, COLORS, MOTIONS, SHAPES, STYLES

    if not isinstance(world, dict):
        return f": expected a scene object, got {world!r:.60}"
    objects = world.get("objects")
    if not isinstance(objects, list) or not objects:
        return "['objects']: expected a non-empty list of objects"
    kind = entry.get("world_kind")
    if kind is not None and kind not in KINDS:
        return f": world_kind {kind!r:.40} is not one of {', '.join(KINDS)}"
    if kind in ("multiple_objects", "spatial_relationship") and len(objects) < 2:
        return f"['objects']: a {kind} scene needs two objects"
    choices = {"shape": SHAPES, "color": COLORS, "motion": MOTIONS}
    for index, obj in enumerate(objects):
        where = f"['objects'][{index}]"
        if not isinstance(obj, dict):
            return f"{where}: expected an object, got {obj!r:.60}"
        unknown = sorted(set(obj) - {"shape", "color", "x", "y", "radius", "motion", "speed"})
        if unknown:
            return f"{where}: unknown key {unknown[0]!r}"
        for key in ("shape", "color", "motion"):
            if (key != "motion" or key in obj) and obj.get(key) not in choices[key]:
                return f"{where}[{key!r}]: {obj.get(key)!r:.40} is not one of {', '.join(choices[key])}"
        for key in ("x", "y", "radius", "speed"):
            if (key != "speed" or key in obj) and not _finite(obj.get(key)):
                return f"{where}[{key!r}]: expected a finite number, got {obj.get(key)!r:.40}"
    unknown = sorted(set(world) - {"objects", "background", "style", "n_frames", "height", "width", "relation",
                                   "meta"})
    if unknown:
        return f": unknown key {unknown[0]!r}"
    for key, allowed in (("background", BACKGROUNDS), ("style", STYLES)):
        if key in world and world[key] not in allowed:
            return f"[{key!r}]: {world[key]!r:.40} is not one of {', '.join(allowed)}"
    for key in ("n_frames", "height", "width"):
        if key in world and (isinstance(world[key], bool) or not isinstance(world[key], int) or world[key] < 1):
            return f"[{key!r}]: expected an integer >= 1, got {world[key]!r:.40}"
    if not isinstance(world.get("relation", ""), str) or not isinstance(world.get("meta", {}), dict):
        return ": 'relation' must be a string and 'meta' an object"
    return None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _video_fields_problem(entry: dict) -> str | None:
    """The entry's fields about the video itself: `fps` (a frame folder's rate) finite and within what the evaluators
    sample; never `generation`, which only the harness measures for a video it generated."""
    from evaluators.video import MAX_FPS, fps_problem

    if "generation" in entry:
        return ("'generation' is the harness's own measurement of a video it generated; a prompt file cannot "
                "give a video its compute")
    fps = entry.get("fps")
    if fps is not None and fps_problem(fps):   # the same rule as a video file's own frame rate
        return f"fps must be a number in (0, {MAX_FPS:g}], got {fps!r:.40}"
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
