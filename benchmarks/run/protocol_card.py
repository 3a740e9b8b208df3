"""The run's protocol card: how its videos were made and scored (fps, frames, resolution, samples, seed rule, prompt
file and hash, precision, backbones and weight hashes) and every departure from VBench's standard protocol, the one
its leaderboard numbers follow (`evaluators.vbench.protocol`). Written to results.json (`provenance.protocol`),
report.md and report.html."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from benchmarks.core.hashing import file_sha256
from evaluators.vbench import protocol as vbench

VBENCH_PROTOCOL = {
    "prompt_file": f"{vbench.FULL_INFO_FILE} (vbench package), standard mode",
    "samples_per_prompt": vbench.SAMPLES_PER_PROMPT,
    "samples_per_dimension": vbench.SAMPLES_PER_DIMENSION,
    "static_filter_keeps": vbench.STATIC_FILTER_KEEPS,
    "seed_rule": vbench.SEED_RULE,
    "precision": vbench.PRECISION,
    "dimensions": len(vbench.DIMENSIONS),
    "fps_frames_resolution": "not fixed: the leaderboard lists each model's own (sampled_videos/README.md)",
    "source": "VBench 0.1.5 vbench/__init__.py, vbench/cli/static_filter.py; VBench prompts/README.md, "
              "sampled_videos/README.md",
}
FPS_NOTE = ("VBench fixes no fps, frame count or resolution, but dynamic_degree (8 fps sampling), motion_smoothness, "
            "temporal_flickering and the static filter move with them: compare runs with the same ones")


def video_facts(path: Path, fps_hint: float | None = None) -> dict | None:
    """fps, frame count, height and width from a video file's header (PyAV, nothing decoded unless the container
    gives no frame count) or a frame folder; None when unreadable."""
    import av

    from evaluators.video import DEFAULT_FOLDER_FPS, IMAGE_SUFFIXES

    try:
        if path.is_dir():
            from PIL import Image

            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            with Image.open(images[0]) as first:
                width, height = first.size
            return {"fps": float(fps_hint or DEFAULT_FOLDER_FPS), "frames": len(images), "height": height,
                    "width": width}
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            frames = stream.frames or sum(1 for _ in container.decode(stream))
            return {"fps": round(float(rate), 3) if rate else None, "frames": int(frames),
                    "height": stream.height, "width": stream.width}
    except Exception:   # a file the run already recorded as failed: it has no facts to add
        return None


def _counts(values) -> dict:
    """{value: how many videos}, most common first (text keys: JSON)."""
    return {str(k): n for k, n in Counter(v for v in values if v is not None).most_common()}


def _fmt_counts(counts: dict, unit: str = "", noun: str = "video") -> str:
    """{"8": 120, "24": 5} -> "8 fps: 120 videos, 24 fps: 5 videos"; one value -> "8 fps (all 125 videos)"."""
    if not counts:
        return "unknown"
    def value(k: str) -> str:   # "1 sample", "5 samples"; "8 fps"
        return f"{k}{unit}" + ("s" if unit in (" sample", " frame") and k != "1" else "")

    if len(counts) == 1:
        k, n = next(iter(counts.items()))
        return f"{value(k)} (all {n} {noun}{'s' if n != 1 else ''})"
    return ", ".join(f"{value(k)}: {n} {noun}{'s' if n != 1 else ''}" for k, n in counts.items())


def samples_per_prompt(per_video: pd.DataFrame) -> dict:
    """{samples: prompts} over (model, prompt): how many distinct samples each prompt has."""
    if not len(per_video):
        return {}
    keys = [c for c in ("sample", "seed") if c in per_video]
    counts = per_video.drop_duplicates(["model", "prompt", *keys, "video"]).groupby(["model", "prompt"]).size()
    return _counts(counts.tolist())


def backbone_hashes(specs: list[str], per_video: pd.DataFrame) -> list[dict]:
    """Each backbone the rows name: kind, model, weight file and its SHA-256 (the file as the run read it)."""
    from evaluators.backbone_loading import parse_backbone

    labels = set(per_video.get("backbone", pd.Series(dtype=str)).dropna().astype(str))
    by_kind = {}
    for text in specs:
        try:
            spec = parse_backbone(text)
        except (ValueError, FileNotFoundError):
            continue
        by_kind[spec.kind] = spec   # a later spec of a kind replaces an earlier one, as load_backbones does
    used = []
    for spec in by_kind.values():
        if any(spec.label in label for label in labels):
            used.append({"kind": spec.kind, "model": spec.model, "weights": str(spec.weights),
                         "sha256": file_sha256(spec.weights)})
    return used


def vbench_prompt_file_sha256() -> str | None:
    """SHA-256 of the installed vbench package's VBench_full_info.json, or None without the package."""
    import importlib.util

    spec = importlib.util.find_spec("vbench")
    path = Path(spec.origin).parent / vbench.FULL_INFO_FILE if spec and spec.origin else None
    return file_sha256(path) if path and path.is_file() else None


def departures(card: dict, per_video: pd.DataFrame, flicker_prompts: set) -> list[str]:
    """Every way this run departs from VBench's standard protocol (empty: comparable with its leaderboard);
    `flicker_prompts`: the prompts tagged temporal_flickering (25 samples each)."""
    out = []
    prompt = card["prompt_file"]
    official = vbench_prompt_file_sha256()
    if prompt.get("path") is None:
        out.append(f"prompts: {prompt.get('kind')}, not VBench's {vbench.FULL_INFO_FILE} (standard mode)")
    elif official is None or prompt.get("sha256") != official:
        out.append(f"prompt file {Path(prompt['path']).name} is not VBench's {vbench.FULL_INFO_FILE}"
                   + ("" if official else " (vbench not installed: its hash unknown here)"))
    vbench_rows = per_video[per_video["dimension"].isin(vbench.DIMENSIONS)] if len(per_video) else per_video
    off = _off_protocol_samples(vbench_rows, flicker_prompts)
    if off:
        out.append(f"samples: {off}")
    if card["seed_rule"].startswith("unknown"):
        out.append("seeds: not recorded (videos made elsewhere); VBench asks for a different random seed per video, "
                   "recorded")
    scored = set(vbench_rows.loc[vbench_rows["status"] == "ok", "dimension"]) if len(vbench_rows) else set()
    missing = [d for d in vbench.DIMENSIONS if d not in scored]
    if missing:
        out.append(f"dimensions: {len(missing)} of {len(vbench.DIMENSIONS)} not scored ({', '.join(missing)}): "
                   "VBench's Total counts them as 0")
    faithful = vbench_rows.groupby("dimension")["faithful"].apply(
        lambda s: s.astype(str).str.lower().isin(["true", "1"]).all()) if len(vbench_rows) else pd.Series(dtype=bool)
    substitutes = [d for d in vbench.DIMENSIONS if d in faithful.index and not faithful[d]]
    if substitutes:
        out.append(f"backbones: {', '.join(substitutes)} not computed with VBench's algorithm and weights "
                   "(substitute or other backbone)")
    if card["precision"]["evaluators"] != "fp32":
        out.append(f"precision: evaluators in {card['precision']['evaluators']} (VBench: {vbench.PRECISION})")
    return out


def _off_protocol_samples(rows: pd.DataFrame, flicker: set) -> str:
    """Prompts whose sample count is not VBench's (5; 25 for a temporal_flickering prompt), said in a few words."""
    if not len(rows):
        return ""
    keys = [c for c in ("sample", "seed") if c in rows]
    counts = rows.drop_duplicates(["model", "prompt", *keys, "video"]).groupby(["model", "prompt"]).size()
    wrong = Counter()
    for (_, prompt), n in counts.items():
        want = vbench.samples_read("temporal_flickering") if prompt in flicker else vbench.SAMPLES_PER_PROMPT
        if n != want:
            wrong[(n, want)] += 1
    return "; ".join(f"{k} prompt(s) with {n} sample(s), VBench {want}" for (n, want), k in sorted(wrong.items()))


def protocol_card(suite, per_video: pd.DataFrame, videos: list[Path], prompts_path=None,
                  backbones: list[str] = (), checkpoints: dict | None = None) -> dict:
    """The card of one run: `videos` the files scored (probed for fps, frames, size), `prompts_path` an external
    run's --prompts (None: custom input), `backbones` the specs in effect (defaults first)."""
    from benchmarks.run.suites import vbench_full_info_path

    facts = [f for f in (video_facts(Path(v)) for v in dict.fromkeys(videos)) if f]
    if suite.kind == "external":
        prompt = ({"kind": "custom input: each prompt from its file name", "path": None} if prompts_path is None
                  else {"kind": "full_info JSON", "path": str(prompts_path)})
        seed_rule = "unknown: videos made elsewhere"
    else:
        if suite.prompts == "world":
            prompt = {"kind": "the world prompt suite (generated)", "path": None}
        else:
            path = vbench_full_info_path() if suite.prompts == "vbench" else Path(suite.prompts)
            prompt = {"kind": "full_info JSON", "path": str(path)}
        from benchmarks.generators.base import BATCH_SEED_STRIDE, PER_VIDEO_SEED_STRIDE

        seed_rule = (f"sample i of prompt p: seed {suite.seed} + {PER_VIDEO_SEED_STRIDE} p + i (generators taking a "
                     f"seed per video); batch b of sample i: {suite.seed} + {BATCH_SEED_STRIDE} i + b (the shipped "
                     "denoisers); each in per_video.csv")
    if prompt.get("path"):
        prompt["sha256"] = file_sha256(prompt["path"])
    flicker = _tagged_prompts(suite, prompt.get("path"), "temporal_flickering")
    dtypes = {name: (info.get("fingerprint") or {}).get("dtype") for name, info in (checkpoints or {}).items()}
    card = {
        "videos": len(facts),
        "fps": _counts(f"{f['fps']:g}" if f["fps"] else None for f in facts),
        "frames": _counts(f["frames"] for f in facts),
        "resolution": _counts(f"{f['width']}x{f['height']}" for f in facts),
        "samples_per_prompt": samples_per_prompt(per_video),
        "seed_rule": seed_rule,
        "prompt_file": prompt,
        "precision": {"evaluators": "fp32", "generation": {k: v for k, v in dtypes.items() if v}},
        "backbones": backbone_hashes(list(backbones), per_video),
        "vbench_protocol": VBENCH_PROTOCOL,
        "note": FPS_NOTE,
    }
    card["departures"] = departures(card, per_video, flicker)
    card["vbench_comparable"] = not card["departures"]
    return card


def _tagged_prompts(suite, path, dimension: str) -> set:
    """The prompts a prompt file (or a generating suite) tags with `dimension`; none in custom-input mode."""
    if suite.kind != "external":
        from benchmarks.run.suites import prompt_entries

        return {e["prompt_en"] for e in prompt_entries(suite) if dimension in e.get("dimension", [])}
    if path is None:
        return set()
    from evaluators.prompts import load_full_info

    return {e["prompt_en"] for e in load_full_info(path) if dimension in e.get("dimension", [])}


def comparable_line(card: dict) -> str:
    """"Comparable with VBench's leaderboard? yes" or "no: <every departure>"."""
    if card.get("vbench_comparable"):
        return "Comparable with VBench's leaderboard? yes (VBench's standard protocol throughout)"
    return "Comparable with VBench's leaderboard? no: " + "; ".join(card.get("departures") or [])


def card_rows(card: dict) -> list[tuple[str, str]]:
    """(field, value) pairs, as report.md and report.html show them."""
    prompt = card.get("prompt_file") or {}
    prompt_text = prompt.get("kind", "?") + (f": {prompt['path']} (sha256 {prompt.get('sha256', '?')})"
                                             if prompt.get("path") else "")
    backbones = "; ".join(f"{b['kind']}={b['model']} {Path(b['weights']).name} sha256 {b['sha256'][:16]}…"
                          for b in card.get("backbones") or []) or "none with weights (weight-free or substitutes)"
    generation = card.get("precision", {}).get("generation") or {}
    precision = f"evaluators {card.get('precision', {}).get('evaluators', '?')}" + (
        "; generation " + ", ".join(f"{m} {d}" for m, d in generation.items()) if generation else "")
    return [("videos", str(card.get("videos", 0))), ("fps", _fmt_counts(card.get("fps") or {}, " fps")),
            ("frames", _fmt_counts(card.get("frames") or {}, " frame")),
            ("resolution (W×H)", _fmt_counts(card.get("resolution") or {})),
            ("samples per prompt", _fmt_counts(card.get("samples_per_prompt") or {}, " sample", "prompt")),
            ("seed rule", card.get("seed_rule", "?")), ("prompt file", prompt_text), ("precision", precision),
            ("backbones", backbones)]


def card_markdown(card: dict) -> str:
    """report.md's protocol section."""
    from benchmarks.core.outputs import markdown_cell

    lines = ["", "## Protocol", "", "| | |", "|---|---|"]
    lines += [f"| {field} | {markdown_cell(value)} |" for field, value in card_rows(card)]
    lines += ["", f"**{comparable_line(card)}**", "", f"VBench's protocol ({card['vbench_protocol']['source']}): "
              f"{card['vbench_protocol']['samples_per_prompt']} samples a prompt, "
              f"{card['vbench_protocol']['samples_per_dimension']['temporal_flickering']} for temporal_flickering's "
              f"(its static filter keeps {card['vbench_protocol']['static_filter_keeps']}); {FPS_NOTE}."]
    return "\n".join(lines) + "\n"
