"""`m4v-bench eval`: score a folder of videos on the registered evaluators, write tidy tables."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benchmarks.provenance import provenance
from evaluators import EVALUATORS
from evaluators.backbones import BACKBONE_USAGE, default_backbones, load_backbones
from evaluators.registry import Declined, Record, build_evaluator, runnable
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores
from evaluators.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoReadError, read_video

VBENCH_NAMING = re.compile(r"^(?P<prompt>.+)-(?P<index>\d+)$")  # VBench: "<prompt>-<index>.mp4"


def discover_videos(directory: Path) -> list[Path]:
    """Video files and frame folders directly inside `directory`, sorted by name."""
    if not directory.is_dir():
        raise FileNotFoundError(f"--videos {directory}: not a directory")
    found = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(path)
        elif path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            found.append(path)
    if not found:
        raise FileNotFoundError(f"--videos {directory}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) or "
                                "folders of frames in it")
    return found


def load_prompts(full_info: Path | None) -> dict | None:
    """VBench full_info JSON -> {prompt: entry}; None without a suite."""
    if full_info is None:
        return None
    try:
        entries = json.loads(Path(full_info).read_text())
        return {entry["prompt_en"]: entry for entry in entries}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--prompts {full_info}: not a VBench full_info JSON list ({exc})") from exc


def prompt_for(path: Path, prompts: dict | None) -> tuple[str, dict]:
    if prompts is None:
        return "", {}
    match = VBENCH_NAMING.match(path.stem if path.is_file() else path.name)
    name = match.group("prompt") if match else path.stem
    return (name, prompts[name]) if name in prompts else ("", {})


def build_evaluators(dims: list[str] | None, backbones: list[str], with_prompts: bool = False,
                     defaults: bool = True) -> dict:
    """Evaluators for `dims` (default: every registered one whose backbones are at hand and, without a prompt
    suite, that needs no prompt). Backbones given on the command line replace the shipped world-trained
    defaults of their kind (defaults=False: none). Reads only the evaluators' own metadata."""
    loaded = load_backbones((default_backbones() if defaults else []) + list(backbones))
    if dims is None:
        dims = [name for name in runnable(loaded)
                if with_prompts or not {"prompt", "prompt_info"} & set(EVALUATORS[name].needs)]
    unknown = [d for d in dims if d not in EVALUATORS]
    if unknown:
        raise ValueError(f"--dims: unknown {unknown}; available: {sorted(EVALUATORS)}")
    for d in dims:
        missing = [kind for kind in EVALUATORS[d].backbones if kind not in loaded]
        if missing:
            raise ValueError(f"--dims {d} needs backbone(s) {missing}: --backbone {BACKBONE_USAGE[missing[0]]}")
    return {d: build_evaluator(d, loaded) for d in dims}


def run_eval(videos_dir, out_dir, prompts_path=None, dims=None, backbones=(), log=print) -> pd.DataFrame:
    """Score every video; unreadable ones are reported and recorded as failed; returns per-video rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(prompts_path)
    evaluators = build_evaluators(dims, list(backbones), with_prompts=prompts is not None)
    rows = []
    for path in tqdm(discover_videos(Path(videos_dir)), desc="videos", unit="video", file=sys.stderr):
        prompt, entry = prompt_for(path, prompts)
        try:
            video = read_video(path, prompt=prompt, aux=entry)
        except VideoReadError as exc:
            log(f"failed: {exc}")
            rows += [_row(Record(str(path), d, float("nan"), e.backbone, 0), "failed", str(exc))
                     for d, e in evaluators.items()]
            continue
        for dim, evaluator in evaluators.items():
            if not evaluator.applies(video):
                continue
            try:
                rows.append(_row(evaluator.evaluate_video(video), "ok", ""))
            except Declined as exc:  # e.g. temporal_flickering on a video the static filter drops
                rows.append(_row(Record(str(path), dim, float("nan"), evaluator.backbone, video.num_frames),
                                 "declined", str(exc)))
            except ValueError as exc:  # e.g. clip_score on a video without a prompt
                log(f"failed: {path} {dim}: {exc}")
                rows.append(_row(Record(str(path), dim, float("nan"), evaluator.backbone, video.num_frames),
                                 "failed", str(exc)))
    per_video = pd.DataFrame(rows)
    summary = summarize(per_video, evaluators)
    per_video.to_csv(out_dir / "per_video.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    _write_vbench_json(per_video, summary, out_dir)
    config = {"videos": str(videos_dir), "prompts": str(prompts_path) if prompts_path else None,
              "dims": list(evaluators), "backbones": list(backbones), "default_backbones": default_backbones(),
              "evaluator_versions": {d: e.version for d, e in evaluators.items()}}
    (out_dir / "provenance.json").write_text(json.dumps(provenance(config), indent=2) + "\n")
    return per_video


def _row(record: Record, status: str, error: str) -> dict:
    return {"video": record.video, "dimension": record.dimension, "score": record.score,
            "backbone": record.backbone, "n_frames": record.n_frames, "status": status, "error": error,
            "extra": json.dumps(record.extra)}


def summarize(per_video: pd.DataFrame, evaluators: dict) -> pd.DataFrame:
    """Aggregate per dimension with the dimension's own weighting, plus VBench Quality / Semantic / Total from
    the dimensions computed faithfully (NaN, with a warning, where any is missing)."""
    rows = []
    ok = per_video[per_video["status"] == "ok"]
    for dim, evaluator in evaluators.items():
        part = ok[ok["dimension"] == dim]
        records = [Record(r.video, dim, r.score, r.backbone, r.n_frames, json.loads(r.extra))
                   for r in part.itertuples()]
        rows.append({"dimension": dim, "score": evaluator.aggregate(records), "n_videos": len(records),
                     "backbone": evaluator.backbone, "vbench_faithful": evaluator.faithful})
    faithful = {r["dimension"]: r["score"] for r in rows if r["vbench_faithful"] and r["dimension"] in NORMALIZATION}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = vbench_scores(faithful)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for key in ("quality", "semantic", "total"):
        rows.append({"dimension": f"vbench_{key}", "score": scores[key], "n_videos": len(ok["video"].unique()),
                     "backbone": "", "vbench_faithful": True})
    return pd.DataFrame(rows)


def _write_vbench_json(per_video: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> None:
    """VBench's `<name>_eval_results.json` layout, for the faithfully computed dimensions only."""
    results = {}
    for row in summary.itertuples():
        if not row.vbench_faithful or row.dimension not in NORMALIZATION:
            continue
        part = per_video[(per_video["dimension"] == row.dimension) & (per_video["status"] == "ok")]
        results[row.dimension] = [row.score, [{"video_path": v, "video_results": s}
                                              for v, s in zip(part["video"], part["score"])]]
    (out_dir / "m4v_eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
