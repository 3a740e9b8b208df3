"""VBench's own files and protocol as they are (issue 29): VBench_full_info.json loads with VBench's per-dimension
lookup and runs end to end through `eval`; color takes its object from the prompt as vbench/color.py does;
temporal_flickering's static filter and 5-per-prompt quota as vbench/cli/static_filter.py runs them; VBench Total
by VBench's rule (a missing dimension counts as 0) beside the present-dimensions reading."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from module_stubs import stub_module

from benchmarks.cli import main
from benchmarks.run.suites import get_suite, prompt_entries
from evaluators import EVALUATORS, Video
from evaluators.registry import Declined
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores_missing_zero, vbench_scores_present


def vbench_file() -> Path:
    spec = importlib.util.find_spec("vbench")
    if spec is None:
        pytest.skip("vbench 0.1.5 not installed (make test installs it)")
    return Path(spec.origin).parent / "VBench_full_info.json"


def vbench(name):
    """A vbench module, its video decoder and detector imports (never run here) stubbed."""
    vbench_file()
    stub_module("decord", VideoReader=None, cpu=None)
    stub_module("vbench.third_party.grit_model", DenseCaptioning=None)
    return importlib.import_module(name)


def test_full_info_loads_with_vbench_per_dimension_lookup(tmp_path):
    """Every dimension scores exactly VBench's prompt list with VBench's auxiliary_info, the repeated prompts
    included (93 for the three overall dimensions)."""
    load_dimension_info = vbench("vbench.utils").load_dimension_info
    # VBench's evaluate adds a video_list to each entry (build_full_info_json) before looking dimensions up
    listed = tmp_path / "full_info.json"
    listed.write_text(json.dumps([{**e, "video_list": [f"{e['prompt_en']}-0.mp4"]}
                                  for e in json.loads(vbench_file().read_text())]))
    ours = prompt_entries(get_suite("vbench-standard"))
    for dim in NORMALIZATION:
        _, theirs = load_dimension_info(str(listed), dim, "en")
        mine = [{"prompt": e["prompt_en"], **({"auxiliary_info": e["auxiliary_info"][dim]}
                                              if dim in e["auxiliary_info"] else {})}
                for e in ours if dim in e["dimension"]]
        theirs = [{k: v for k, v in t.items() if k != "video_list"} for t in theirs]
        assert sorted(mine, key=json.dumps) == sorted(theirs, key=json.dumps), dim
        # a suite of one dimension's prompts takes them in VBench's order (vbench-fast: the first 50)
        one = prompt_entries(get_suite("vbench-standard").with_overrides(prompt_dimension=dim))
        assert [e["prompt_en"] for e in one] == [t["prompt"] for t in theirs], dim
    counts = {d: sum(d in e["dimension"] for e in ours) for d in ("overall_consistency", "aesthetic_quality")}
    assert counts == {"overall_consistency": 93, "aesthetic_quality": 93}
    assert len({e["prompt_en"] for e in ours}) == len(ours)      # one video name per prompt


def test_vbench_standard_makes_25_samples_of_the_flickering_prompts():
    from benchmarks.run.runner import generation_items

    suite = get_suite("vbench-standard").with_overrides(batch=1000)
    entries = prompt_entries(suite)
    items = generation_items(suite, [object()], entries)
    made = {}
    for *_, batch in items:
        for e in batch:
            made[e["prompt_en"]] = made.get(e["prompt_en"], 0) + 1
    assert {made[e["prompt_en"]] for e in entries if "temporal_flickering" in e["dimension"]} == {25}
    assert {made[e["prompt_en"]] for e in entries if "temporal_flickering" not in e["dimension"]} == {5}
    # the first 5 samples batch every prompt exactly as before: their seeds and videos do not change
    assert [len(batch) for _, sample, _, batch in items if sample < 5] == [len(entries)] * 5


def test_color_takes_its_object_from_the_prompt_as_vbench(monkeypatch):
    """vbench/color.py's `color` derives the object from the prompt; ours gives the same string on every one of
    VBench's color entries (captured from VBench's own function with its detector stubbed)."""
    from evaluators.world_oracle import vbench_color_object

    color = vbench("vbench.color")
    seen = []
    monkeypatch.setattr(color, "load_video", lambda path, num_frames, return_tensor: np.zeros((1, 8, 8, 3), np.uint8))
    monkeypatch.setattr(color, "get_dect_from_grit", lambda model, frames: [])
    monkeypatch.setattr(color, "check_generate", lambda c, o, p: seen.append(o) or (1, 1))
    entries = [e for e in json.loads(vbench_file().read_text()) if "color" in e["dimension"]]
    # VBench's load_dimension_info hands `color` each entry's auxiliary_info["color"]
    color.color(None, [{"prompt": e["prompt_en"], "video_list": ["v.mp4"],
                        "auxiliary_info": e["auxiliary_info"]["color"]} for e in entries], "cpu")
    assert len(seen) == len(entries) == 85
    assert seen == [vbench_color_object(e["prompt_en"], e["auxiliary_info"]["color"]["color"]) for e in entries]
    assert vbench_color_object("a red bicycle", "red") == "bicycle"


def test_color_on_vbench_entry_declines_when_the_object_is_never_seen():
    from evaluators.world_oracle import Color

    entry = {"prompt_en": "a red bicycle", "dimension": ["color"], "auxiliary_info": {"color": {"color": "red"}}}
    video = Video(np.zeros((16, 64, 64, 3), np.uint8), 8.0, entry["prompt_en"], "v/a red bicycle-0.mp4", entry)
    with pytest.raises(Declined, match="'bicycle' is never detected"):
        Color().evaluate_video(video)


class CountingFlow:
    """A flow source whose magnitude is 0 (every video static) and which counts its calls."""

    label = "counting"

    def __init__(self):
        self.calls = 0

    def magnitude(self, a, b):
        self.calls += 1
        return np.zeros(a.shape[:2], np.float32)


def flicker_videos(model, prompt, n, tagged=True):
    aux = {"prompt_en": prompt, "dimension": ["temporal_flickering"]} if tagged else {}
    frames = np.full((4, 16, 16, 3), 7, np.uint8)
    return [Video(frames, 8.0, prompt, f"videos/{model}/{prompt}-{i}.mp4", aux) for i in range(n)]


def flicker_rows(evaluator, videos):
    from benchmarks.run.runner import evaluate_record

    rows = []
    for video in videos:
        computed, _ = evaluate_record(video, "temporal_flickering", evaluator)
        row = {"model": Path(video.source).parent.name, "prompt": video.prompt, "video": video.source, **computed}
        evaluator.observe(video, row)
        rows.append(row)
    return type(evaluator).finalize(rows)


def test_flickering_quota_is_per_model_and_prompt_in_file_name_order_before_the_flow():
    flicker = EVALUATORS["temporal_flickering"]()
    flicker.flow = CountingFlow()
    videos = flicker_videos("a", "p", 12) + flicker_videos("b", "p", 7) + flicker_videos("a", "q", 2)
    rows = flicker_rows(flicker, videos)
    kept = [Path(r["video"]).name for r in rows if r["status"] == "ok"]
    # VBench visits sorted(glob(...)): p-0, p-1, p-10, p-11, p-2 are model a's first five of prompt p
    assert kept == ["p-0.mp4", "p-1.mp4", "p-2.mp4", "p-10.mp4", "p-11.mp4",
                    *[f"p-{i}.mp4" for i in range(5)], "q-0.mp4", "q-1.mp4"]
    declined = [r for r in rows if r["status"] == "declined"]
    assert len(declined) == 7 + 2 and all("stops after the first 5" in r["reason"] for r in declined)
    # the filter's flow never ran on a video past the quota known at its turn: a's p-5..p-9 and b's p-5, p-6
    pairs = 4 - 1 + 2     # consecutive pairs and the two wrap-around pairs of a 4-frame video
    assert flicker.flow.calls == pairs * (21 - 7)


def test_flickering_quota_decided_on_two_ranks_equals_one_process():
    videos = flicker_videos("a", "p", 12)
    one = EVALUATORS["temporal_flickering"]()
    one.flow = CountingFlow()
    single = flicker_rows(one, videos)
    ranks = []
    for share in (videos[0::2], videos[1::2]):     # as torchrun would split them, each rank its own evaluator
        rank = EVALUATORS["temporal_flickering"]()
        rank.flow = CountingFlow()
        ranks += flicker_rows(rank, share)
    gathered = EVALUATORS["temporal_flickering"].finalize(sorted(ranks, key=lambda r: videos.index(
        next(v for v in videos if v.source == r["video"]))))
    assert gathered == single


def test_custom_input_scores_every_video_unfiltered():
    flicker = EVALUATORS["temporal_flickering"]()
    flicker.flow = CountingFlow()
    rows = flicker_rows(flicker, flicker_videos("a", "p", 7, tagged=False))
    assert [r["status"] for r in rows] == ["ok"] * 7 and flicker.flow.calls == 0


def test_vbench_total_counts_a_missing_dimension_as_zero():
    raw = {d: 0.8 for d in NORMALIZATION if d != "human_action"}
    norm = {d: (0.8 - lo) / (hi - lo) * w for d, (lo, hi, w, _) in NORMALIZATION.items() if d != "human_action"}
    quality = sum(v for d, v in norm.items() if NORMALIZATION[d][3] == "quality") / 6.5
    semantic_theirs = sum(v for d, v in norm.items() if NORMALIZATION[d][3] == "semantic") / 9    # human_action: 0
    semantic_present = sum(v for d, v in norm.items() if NORMALIZATION[d][3] == "semantic") / 8
    assert vbench_scores_missing_zero(raw)["total"] == pytest.approx((4 * quality + semantic_theirs) / 5)
    assert vbench_scores_present(raw)["total"] == pytest.approx((4 * quality + semantic_present) / 5)
    # a missing quality dimension is raw 0, normalised below 0 where its Min is above 0 (VBench does not clip)
    no_flicker = {**raw, "human_action": 0.8}
    no_flicker.pop("temporal_flickering")
    low = NORMALIZATION["temporal_flickering"][0]
    assert vbench_scores_missing_zero(no_flicker)["quality"] == pytest.approx(
        (quality * 6.5 - (0.8 - low) / (1 - low) + (0 - low) / (1 - low)) / 6.5)


def test_eval_runs_vbench_own_file_one_video_per_dimension(tmp_path, capsys):
    """`m4v-bench eval --prompts VBench_full_info.json` (VBench's file as it is) with one video per dimension,
    named as VBench names them: each video is scored on exactly the dimensions VBench looks it up for, and no row
    fails (color's entries carry no object; the repeated prompt is scored on all four of its dimensions)."""
    import cv2

    from evaluators.video import write_video

    entries = json.loads(vbench_file().read_text())
    chosen = {"The bund Shanghai, oil painting"}
    for dim in NORMALIZATION:
        chosen.add(next(e["prompt_en"] for e in entries if dim in e["dimension"]))
    videos = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for prompt in sorted(chosen):
        base = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), (5, 5), 1.5)
        frames = np.stack([np.roll(base, t, axis=1) for t in range(16)])   # every frame distinct
        write_video(videos / f"{prompt}-0.mp4", frames, fps=8)
    out = tmp_path / "out"
    code = main(["eval", "--videos", str(videos), "--prompts", str(vbench_file()), "--out", str(out)])
    per_video = pd.read_csv(out / "per_video.csv")
    assert code == 0, per_video[per_video["status"] == "failed"][["dimension", "reason"]].to_string()
    assert (per_video["status"] != "failed").all()
    by_prompt = {}
    for e in entries:
        if e["prompt_en"] in chosen:
            by_prompt.setdefault(e["prompt_en"], set()).update(e["dimension"])
    vbench_rows = per_video[per_video["dimension"].isin(list(NORMALIZATION))]
    scored = vbench_rows.groupby("prompt")["dimension"].apply(set).to_dict()
    ran = set(vbench_rows["dimension"])       # dimensions whose backbones are at hand offline
    assert scored == {p: dims & ran for p, dims in by_prompt.items() if dims & ran}
    assert scored["The bund Shanghai, oil painting"] >= {"appearance_style", "overall_consistency"}


def test_only_a_dimension_whose_applicable_videos_failed_fails_the_run():
    from benchmarks.run.runner import unscored_dimensions

    rows = pd.DataFrame({"dimension": ["color", "color", "scene", "scene", "motion", "motion", "style"],
                         "status": ["declined", "declined", "failed", "ok", "failed", "declined", "failed"]})
    assert unscored_dimensions(rows) == ["motion", "style"]
    assert unscored_dimensions(rows[rows["dimension"] == "color"]) == []


def test_an_evaluator_raising_anything_gives_a_failed_row_naming_it():
    from benchmarks.run.runner import evaluate_record

    class Broken:
        def evaluate_video(self, video):
            raise KeyError("object")

    video = Video(np.zeros((4, 8, 8, 3), np.uint8), 8.0, "p", "videos/m/p-0.mp4", {})
    computed, cacheable = evaluate_record(video, "color", Broken())
    assert computed["status"] == "failed" and computed["reason"] == "KeyError: 'object'" and computed["score"] is None


def test_the_first_batch_of_each_model_is_an_untimed_warm_up(tmp_path, monkeypatch):
    """A generator whose first call is slow (compilation, first calls): the slow call is the warm-up, the timed
    batches are the steady state, and seconds per video is their median with an interval."""
    import benchmarks.compute.measured_generation as measured

    real, calls = measured.generate_measured, []

    def slow_first(pipe, prompts, *args):
        videos, records = real(pipe, prompts, *args)
        calls.append(len(prompts))
        seconds = 50.0 if len(calls) == 1 else 0.1 * len(calls)   # the first call: 500x a steady one
        return videos, [{**r, "seconds": seconds} for r in records]

    monkeypatch.setattr(measured, "generate_measured", slow_first)
    suite = tmp_path / "suite.toml"
    suite.write_text('name = "warm"\nmodels = ["dit-tiny"]\nper_kind = 1\nbatch = 2\nevaluators = ["compute"]\n'
                     '[sampling]\nframes = 9\nsteps = [1, 1, 1]\n')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "out"), "--no-cache"]) == 0
    assert len(calls) == 1 + 4        # the warm-up batch, then 8 prompts in 4 timed batches of 2
    generation = pd.read_csv(tmp_path / "out" / "generation.csv")
    assert sorted(set(generation["seconds"])) == pytest.approx([0.2, 0.3, 0.4, 0.5])
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").iloc[0]
    assert summary["seconds_per_video"] == pytest.approx(0.35) and summary["timed_batches"] == 4
    assert summary["seconds_per_video_ci_low"] == pytest.approx(0.2)   # 4 batches: min-max (87.5% coverage)
    assert summary["seconds_per_video_ci_high"] == pytest.approx(0.5)
    prov = json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]
    assert prov["checkpoints"]["dit-tiny"]["warm_up_seconds_per_video"] == 50.0
    assert set(prov["machine_load"]) == {"start", "end"} and prov["machine_load"]["start"]["cpu_model"]
