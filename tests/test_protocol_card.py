"""The protocol card (issue 37 §7): what a run's videos were (fps, frames, resolution, samples, seeds, prompt file and
hash, precision, backbones and weight hashes) and every departure from VBench's standard protocol, in results.json,
report.md and report.html; the departure rule checked one departure at a time from a run that follows VBench."""

import hashlib
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from in_process import cli

from benchmarks.run.protocol_card import comparable_line, departures, vbench_prompt_file_sha256
from evaluators.vbench import protocol as vbench
from evaluators.video import write_video

REPO = Path(__file__).resolve().parents[1]


def compliant_rows() -> pd.DataFrame:
    """A run that follows VBench's protocol: 16 dimensions, each faithful, 5 samples a prompt (25 for the
    temporal_flickering prompt)."""
    rows = []
    for dim in vbench.DIMENSIONS:
        prompt = f"prompt of {dim}"
        for i in range(vbench.samples_read(dim)):
            rows.append({"model": "m", "prompt": prompt, "seed": i, "sample": i, "video": f"{prompt}-{i}.mp4",
                         "dimension": dim, "status": "ok", "faithful": True, "score": 0.5})
    return pd.DataFrame(rows)


def official_card(**changes) -> dict:
    official = vbench_prompt_file_sha256()
    if official is None:
        pytest.skip("vbench 0.1.5 not installed (make test installs it)")
    card = {"prompt_file": {"kind": "full_info JSON", "path": "/x/VBench_full_info.json", "sha256": official},
            "seed_rule": "sample i of prompt p: seed 0 + 100000 p + i", "precision": {"evaluators": "fp32"}}
    return {**card, **changes}


FLICKER = {"prompt of temporal_flickering"}


def test_a_run_on_vbench_protocol_has_no_departure():
    card = official_card()
    assert departures(card, compliant_rows(), FLICKER) == []
    assert comparable_line({**card, "vbench_comparable": True}).endswith("yes (VBench's standard protocol throughout)")


def test_each_departure_is_named_alone():
    rows = compliant_rows()
    other = official_card(prompt_file={"kind": "full_info JSON", "path": "/x/mine.json", "sha256": "0" * 64})
    assert departures(other, rows, FLICKER) == ["prompt file mine.json is not VBench's VBench_full_info.json"]
    custom = official_card(prompt_file={"kind": "custom input: each prompt from its file name", "path": None})
    assert [d.split(":")[0] for d in departures(custom, rows, FLICKER)] == ["prompts"]
    fewer = rows[~((rows["dimension"] == "color") & (rows["sample"] >= 3))]
    assert departures(official_card(), fewer, FLICKER) == ["samples: 1 prompt(s) with 3 sample(s), VBench 5"]
    short_flicker = rows[~((rows["dimension"] == "temporal_flickering") & (rows["sample"] >= 5))]
    assert departures(official_card(), short_flicker, FLICKER) == ["samples: 1 prompt(s) with 5 sample(s), VBench 25"]
    unseeded = official_card(seed_rule="unknown: videos made elsewhere")
    assert [d.split(":")[0] for d in departures(unseeded, rows, FLICKER)] == ["seeds"]
    no_scene = rows.assign(status=np.where(rows["dimension"] == "scene", "failed", rows["status"]))
    assert departures(official_card(), no_scene, FLICKER) == [
        "dimensions: 1 of 16 not scored (scene): VBench's Total counts them as 0"]
    substitute = rows.assign(faithful=rows["dimension"] != "imaging_quality")
    assert departures(official_card(), substitute, FLICKER) == [
        "backbones: imaging_quality not computed with VBench's algorithm and weights (substitute or other backbone)"]
    bf16 = official_card(precision={"evaluators": "bf16"})
    assert [d.split(":")[0] for d in departures(bf16, rows, FLICKER)] == ["precision"]


def test_eval_writes_the_card_everywhere(tmp_path):
    """Through the CLI: the card's facts are the files' own (12 fps, 20 frames, 48x40), the prompt file's hash is
    its sha256, and report.md / report.html carry the same comparable line as results.json."""
    videos = tmp_path / "v"
    rng = np.random.default_rng(1)
    for i in range(2):
        write_video(videos / f"a cat, naps-{i}.mp4", rng.integers(0, 255, (20, 40, 48, 3), dtype=np.uint8), fps=12)
    prompts = tmp_path / "mine.json"
    prompts.write_text(json.dumps([{"prompt_en": "a cat, naps", "dimension": ["temporal_flickering"]}]))
    done = cli("eval", "--videos", videos, "--prompts", prompts, "--dims", "temporal_flickering,frame_consistency",
               "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["protocol"]
    assert card["fps"] == {"12": 2} and card["frames"] == {"20": 2} and card["resolution"] == {"48x40": 2}
    assert card["samples_per_prompt"] == {"2": 1}
    assert card["prompt_file"]["sha256"] == hashlib.sha256(prompts.read_bytes()).hexdigest()
    clip = next(b for b in card["backbones"] if b["kind"] == "clip")
    assert clip["sha256"] == hashlib.sha256(Path(clip["weights"]).read_bytes()).hexdigest()
    assert card["vbench_comparable"] is False
    assert card["departures"][0] == "prompt file mine.json is not VBench's VBench_full_info.json"
    assert [d.split(":")[0] for d in card["departures"][1:]] == ["samples", "seeds", "dimensions", "backbones"]
    assert "samples: 1 prompt(s) with 2 sample(s), VBench 25" in card["departures"]
    line = comparable_line(card)
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "## Protocol" in report and f"**{line}**" in report and "| fps | 12 fps (all 2 videos) |" in report
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f'id="vbench-comparable">{html.escape(line)}</p>' in page
