"""bench-eval (benchmarks/perf/eval_bench.py) and the exact-math speed-ups it times: distinct frames, the early stops of
the static filter and dynamic_degree (same decisions as computing every pair, as VBench does), RAFT's encoder
reuse (bit-identical flow), the precision context, the flip counter, and the small config end to end."""

import json
import types

import numpy as np
import pytest
import torch
from module_stubs import stub_module

from benchmarks.perf import eval_bench
from evaluators.vbench import dynamic_degree as dd
from evaluators.vbench import static_filter as sf


def vbench_module(name):
    """A vbench module with the imports these checks never run stubbed (as tests/test_vbench_fidelity.py does)."""
    stub_module("decord", VideoReader=None, cpu=None)
    stub_module("clip", load=None, tokenize=None)
    stub_module("easydict", EasyDict=dict)
    return pytest.importorskip(name, reason="vbench not installed (make test does)")


class ScriptedFlow:
    """A flow source whose pair score is scripted: frame i is filled with the value i; magnitude(a, b) is a
    constant map of score[(i, j)], counted."""

    def __init__(self, scores: dict):
        self.scores, self.calls = scores, 0

    def __call__(self, a, b):
        self.calls += 1
        return np.full((16, 16), self.scores[(int(a[0, 0, 0]), int(b[0, 0, 0]))], dtype=np.float32)


def indexed_frames(n):
    return np.stack([np.full((16, 16, 3), i, dtype=np.uint8) for i in range(n)])


# ---- the videos --------------------------------------------------------------------------------------------------
def test_benchmark_videos_have_every_frame_distinct(tmp_path):
    cfg = eval_bench.BenchConfig(videos=2, n_frames=6, height=32, width=48, small=True)
    files = eval_bench.write_videos(cfg, eval_bench.prompt_entries(cfg), tmp_path)
    assert len(files) == 2 * len(eval_bench.PROMPT_LISTS)
    decoded = [eval_bench._video(path, entry).frames for path, entry in files]
    distinct, total = eval_bench.distinct_frames(decoded)
    assert total == 2 * 11 * 6 and distinct == total
    # the counter does see a repeat
    assert eval_bench.distinct_frames([decoded[0], decoded[0][:2]]) == (6, 8)


def test_prompt_lists_are_vbench_full_info_tag_sets():
    from benchmarks.core.errors import SuiteError
    from benchmarks.run.suites import vbench_full_info_path

    try:
        path = vbench_full_info_path()
    except SuiteError:
        pytest.skip("vbench's VBench_full_info.json is not installed")
    entries = json.loads(path.read_text())
    assert {tuple(sorted(e["dimension"])) for e in entries} == {tuple(sorted(t)) for _, t, _ in
                                                                eval_bench.PROMPT_LISTS}
    tagged = [d for _, tags, _ in eval_bench.PROMPT_LISTS for d in tags]
    assert sorted(tagged) == sorted(eval_bench.DIMENSIONS)   # each dimension on exactly one prompt list


# ---- early stops: the same decisions as VBench's full computation ----------------------------------------------
def test_static_filter_early_stop_decides_as_vbench_on_videos_that_pass_and_fail():
    static = vbench_module("vbench.cli.static_filter")
    rng = np.random.default_rng(0)
    frames = indexed_frames(16)
    params = sf.static_params(16, 16, 16)                # thres 0.1875 px, count_num 2
    outcomes, saved = set(), 0
    for _ in range(400):
        values = rng.choice([0.0, params["thres"] * 0.9, params["thres"] * 1.1, params["thres"] * 5], size=17,
                            p=[0.5, 0.2, 0.2, 0.1])
        scores = {(i, i + 1): values[i] for i in range(15)} | {(0, 15): values[15], (15, 0): values[16]}
        full, early = ScriptedFlow(scores), ScriptedFlow(scores)
        decided = sf.is_static(frames, full, early_stop=False)
        assert sf.is_static(frames, early, early_stop=True) is decided
        vbench = static.StaticFilter.check_static(types.SimpleNamespace(params=params), list(values))
        assert decided is vbench
        assert full.calls == 17 and early.calls <= 17
        outcomes.add(decided)
        saved += full.calls - early.calls
    assert outcomes == {True, False} and saved > 0


def test_static_filter_early_stop_on_dis_flow_still_and_moving_videos():
    base = np.random.default_rng(1).integers(0, 256, (64, 96, 3)).astype(np.uint8)
    still = np.stack([np.roll(base, i // 8, axis=1) for i in range(16)])      # 1 px once, distinct pairs few
    moving = np.stack([np.roll(base, 4 * i, axis=1) for i in range(16)])
    for frames, expected in ((still, True), (moving, False)):
        assert sf.is_static(frames, early_stop=False) is expected
        assert sf.is_static(frames, early_stop=True) is expected


def test_dynamic_degree_early_stop_decides_as_vbench_check_move():
    dynamic = vbench_module("vbench.dynamic_degree")
    rng = np.random.default_rng(0)
    frames = indexed_frames(16)
    params = dd.dynamic_params(16, 16, 16)              # thres 0.375 px, count_num 4
    outcomes = set()
    for _ in range(400):
        values = rng.choice([0.0, params["thres"] * 0.99, params["thres"] * 1.01], size=15, p=[0.6, 0.1, 0.3])
        scores = {(i, i + 1): values[i] for i in range(15)}
        full, early = ScriptedFlow(scores), ScriptedFlow(scores)
        moving, all_scores = dd.dynamic_degree(frames, 8, full, early_stop=False)
        early_moving, some_scores = dd.dynamic_degree(frames, 8, early, early_stop=True)
        assert early_moving is moving
        assert moving is dynamic.DynamicDegree.check_move(types.SimpleNamespace(params=params), list(values))
        assert some_scores == all_scores[:len(some_scores)] and early.calls == len(some_scores) <= full.calls
        outcomes.add(moving)
    assert outcomes == {True, False}


def test_dynamic_degree_evaluator_scores_the_same_with_and_without_early_stop(monkeypatch):
    from evaluators import Video, get_evaluator

    base = np.random.default_rng(2).integers(0, 256, (64, 96, 3)).astype(np.uint8)
    videos = [Video(np.stack([np.roll(base, step * i, axis=1) for i in range(16)]), 8, source=f"{step}")
              for step in (0, 1, 6)]
    scores = {}
    for early in (False, True):
        monkeypatch.setattr(dd, "EARLY_STOP", early)
        scores[early] = [r.score for r in get_evaluator("dynamic_degree").evaluate(videos)]
    assert scores[True] == scores[False] and set(scores[True]) == {0.0, 1.0}


# ---- RAFT encoder reuse --------------------------------------------------------------------------------------
def test_raft_encoder_reuse_gives_bit_identical_flow():
    from evaluators.backbones import BackboneSpec
    from evaluators.vbench.flow import RaftFlow

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # RAFT-large on a shared 2-core machine: one thread is faster than two contended
    try:
        raft = RaftFlow(BackboneSpec("raft", "raft_large", None))
        frames = np.random.default_rng(0).integers(0, 256, (3, 124, 132, 3)).astype(np.uint8)   # padded: 128x136
        pairs = [(0, 1), (1, 2), (0, 2), (2, 0)]                    # the static filter's order
        raft.memo_enabled = False                                   # torchvision's forward, as VBench runs RAFT
        reference = [raft.flow(frames[a], frames[b]) for a, b in pairs]
        raft.memo_enabled = True
        reused = [raft.flow(frames[a], frames[b]) for a, b in pairs]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.isfinite(x).all() and x.abs().mean() > 0.1 for x in reference)   # real flows, not NaN / 0
    assert all(torch.equal(x, y) for x, y in zip(reference, reused))
    assert raft.features_computed == 3                              # one encoder pass per frame, not per pair end


# ---- precision -------------------------------------------------------------------------------------------------
def test_backbone_precision_is_autocast_only_when_asked():
    from evaluators.precision import backbone_precision, describe

    x = torch.ones(2, 2)
    with backbone_precision("fp32", "cpu"):
        assert (x @ x).dtype == torch.float32 and describe("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        backbone_precision("int8", "cpu")
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with pytest.raises(ValueError, match="bf16"):
            backbone_precision("bf16", "cpu")
        return
    with backbone_precision("bf16", "cpu"):
        assert (x @ x).dtype == torch.bfloat16
    assert (x @ x).dtype == torch.float32


# ---- the fidelity report ---------------------------------------------------------------------------------------
def _run(results, aggregates):
    return eval_bench.ModeRun(eval_bench._Clock(), results, aggregates, {}, eval_bench._Statistics())


def test_fidelity_report_counts_a_constructed_flip():
    def ok(score, **extra):
        return {"status": "ok", "score": score, "extra": extra}

    declined = {"status": "declined", "score": None, "extra": {}}
    reference = {("temporal_flickering", "a.mp4"): ok(0.99), ("temporal_flickering", "b.mp4"): ok(0.98),
                 ("dynamic_degree", "c.mp4"): ok(1.0), ("dynamic_degree", "d.mp4"): ok(0.0),
                 ("human_action", "e.mp4"): ok(1.0, confident_top5=["running"]),
                 ("subject_consistency", "c.mp4"): ok(0.95)}
    flipped = {**reference, ("temporal_flickering", "b.mp4"): declined,             # the filter now drops b
               ("dynamic_degree", "d.mp4"): ok(1.0),                                # d now moves
               ("human_action", "e.mp4"): ok(0.0, confident_top5=[]),               # label fell under 0.85
               ("subject_consistency", "c.mp4"): ok(0.9)}
    flips = eval_bench.count_flips(reference, flipped)
    assert flips["static filter keeps"] == ["b.mp4"] and flips["dynamic_degree"] == ["d.mp4"]
    assert flips["human_action label in top-5 >= 0.85"] == ["e.mp4"]
    assert eval_bench.count_flips(reference, reference) == {name: [] for name in flips}
    aggregates = {d: 0.5 for d in eval_bench.DIMENSIONS}
    runs = {"vbench": _run(reference, aggregates),
            "shared-bf16": _run(flipped, {**aggregates, "subject_consistency": 0.45})}
    table = eval_bench.flips_table(runs).set_index("decision")["shared-bf16_flipped"]
    assert table.to_dict() == {"dynamic_degree": 1, "human_action label in top-5 >= 0.85": 1,
                               "human_action labels >= 0.85": 1, "static filter keeps": 1}
    fidelity = eval_bench.fidelity_table(runs).set_index("dimension")
    assert fidelity.loc["subject_consistency", "shared-bf16_max_per_video_abs_diff"] == pytest.approx(0.05)
    assert fidelity.loc["subject_consistency", "shared-bf16_minus_vbench"] == pytest.approx(-0.05)
    assert fidelity.loc["total", "shared-bf16_minus_vbench"] < 0


# ---- end to end ------------------------------------------------------------------------------------------------
def test_bench_eval_small_config_through_the_cli(tmp_path, capsys):
    from benchmarks import cli

    precision = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    out = tmp_path / "out"
    assert cli.main(["bench-eval", "--videos", "1", "--frames", "4", "--height", "48", "--width", "64", "--small",
                     "--repeats", "2", "--no-warmup", "--precision", precision, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "vbench per-dimension loop" in printed
    payload = json.loads((out / "bench_eval.json").read_text())
    assert payload["provenance"]["git_commit"] and payload["provenance"]["command"]
    assert payload["checks"]["distinct_frames"] == payload["checks"]["frames"] == 11 * 4
    assert payload["checks"]["load_start"]["load_avg_1m"] is not None
    summary = payload["summary"]
    assert len(summary) == (3 if precision == "bf16" else 2) and summary[0]["speedup"] == 1.0
    assert all(row["repeats"] == 2 and row["cpu_s_min"] <= row["cpu_s"] <= row["cpu_s_max"] for row in summary)
    assert {row["dimension"] for row in payload["fidelity"]} == set(eval_bench.DIMENSIONS) | {"total"}
    assert all(row["shared_flipped"] == 0 for row in payload["flips"])   # the exact path flips nothing
    for name in eval_bench.TABLES:
        assert (out / f"bench_eval_{name}.csv").is_file()
    assert "Commit:" in (out / "bench_eval.md").read_text()
