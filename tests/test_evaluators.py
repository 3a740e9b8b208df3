"""Evaluators: video IO, VBench temporal_flickering / dynamic_degree / static filter, VBench scoring."""

import math

import numpy as np
import pytest
from module_stubs import stub_module

from evaluators import Video, VideoReadError, get_evaluator, read_video, write_video
from evaluators.vbench.dynamic_degree import check_move, dynamic_degree, dynamic_params, sampling_interval
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores
from evaluators.vbench.static_filter import is_static
from evaluators.vbench.temporal_flickering import temporal_flickering_score
from evaluators.video import middle_frame_indices


def textured(height=64, width=64, seed=0):
    """A smooth random texture (blurred noise) that optical flow can track."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 1.5)


def moving_video(n=16, step=3):
    base = textured()
    return np.stack([np.roll(base, step * i, axis=1) for i in range(n)])


def still_video(n=16):
    return np.stack([textured()] * n)


# ---- temporal flickering ------------------------------------------------------------------------------------
def test_identical_frames_do_not_flicker():
    assert temporal_flickering_score(still_video()) == 1.0


def test_alternating_frames_give_the_exact_value():
    frames = np.zeros((6, 8, 8, 3), dtype=np.uint8)
    frames[1::2] = 51                                        # every pair differs by 51 in every channel
    assert temporal_flickering_score(frames) == (255 - 51) / 255


def test_single_frame_is_nan_like_vbench():
    assert math.isnan(temporal_flickering_score(np.zeros((1, 4, 4, 3), dtype=np.uint8)))


def test_flickering_matches_vbench_own_code(tmp_path):
    """Cross-check with VBench's cal_score on the same file (vbench installed --no-deps by `make test`)."""

    stub_module("decord", VideoReader=None, cpu=None)  # unused by this path
    vbench_tf = pytest.importorskip("vbench.temporal_flickering", reason="vbench not installed (make test does)")
    frames = moving_video(n=6, step=1)
    path = write_video(tmp_path / "v.mkv", frames, fps=8)        # lossless, so both read identical frames
    ours = temporal_flickering_score(read_video(path).frames)
    assert ours == pytest.approx(vbench_tf.cal_score(str(path)), abs=1e-12)


def test_flickering_evaluator_records():
    video = Video(still_video(4), fps=8, source="a.mp4")
    record = get_evaluator("temporal_flickering").evaluate([video])[0]
    assert (record.video, record.dimension, record.score, record.backbone) == ("a.mp4", "temporal_flickering",
                                                                             1.0, "static-filter:opencv-dis")


# ---- dynamic degree -----------------------------------------------------------------------------------------
def test_still_video_is_not_dynamic_and_moving_video_is():
    still, _ = dynamic_degree(still_video(), fps=8)
    moving, scores = dynamic_degree(moving_video(), fps=8)
    assert still is False and moving is True
    assert np.median(scores) == pytest.approx(3.0, abs=1.0)  # the 3 px per frame shift


def test_thresholds_scale_with_resolution():
    assert dynamic_params(320, 512, 16) == {"thres": 7.5, "count_num": 4}    # VBench's worked example
    assert dynamic_params(64, 64, 16) == {"thres": 1.5, "count_num": 4}
    assert dynamic_params(64, 64, 10)["count_num"] == round(2.5) == 2          # Python's round, as VBench


def test_fps_sampling_and_early_stop():
    assert [sampling_interval(f) for f in (8, 16, 24, 30, 4)] == [1, 2, 3, 4, 1]
    assert check_move([9, 9, 0, 0], thres=5, count_num=2) is True
    assert check_move([9, 0, 0, 0], thres=5, count_num=2) is False


def test_dynamic_degree_aggregate_is_fraction_dynamic():
    evaluator = get_evaluator("dynamic_degree")
    records = evaluator.evaluate([Video(still_video(), 8, source="s"), Video(moving_video(), 8, source="m")])
    assert [r.score for r in records] == [0.0, 1.0] and evaluator.aggregate(records) == 0.5
    assert records[0].backbone == "opencv-dis"


def test_static_filter():
    assert is_static(still_video()) is True
    assert is_static(moving_video()) is False


# ---- scoring ------------------------------------------------------------------------------------------------
def test_normalisation_and_total_by_hand():
    raw = {d: low for d, (low, high, _, _) in NORMALIZATION.items()}
    raw["temporal_flickering"] = 1.0           # norm 1
    raw["dynamic_degree"] = 0.6                # norm 0.6, weight 0.5
    raw["scene"] = 0.8222 / 2                  # norm 0.5
    scores = vbench_scores(raw)
    quality = (1.0 + 0.5 * 0.6) / 6.5
    semantic = 0.5 / 9
    assert scores["quality"] == pytest.approx(quality)
    assert scores["semantic"] == pytest.approx(semantic)
    assert scores["total"] == pytest.approx((4 * quality + semantic) / 5)
    assert vbench_scores({d: high for d, (_, high, _, _) in NORMALIZATION.items()})["total"] == pytest.approx(1.0)


def test_missing_dimension_is_nan_with_a_warning():
    raw = {d: 0.9 for d in NORMALIZATION if d != "color"}
    with pytest.warns(UserWarning, match="color"):
        scores = vbench_scores(raw)
    assert math.isnan(scores["color"]) and math.isnan(scores["semantic"]) and math.isnan(scores["total"])
    assert not math.isnan(scores["quality"])


def test_not_clipped_like_vbench():
    raw = {d: high for d, (_, high, _, _) in NORMALIZATION.items()}
    raw["subject_consistency"] = 0.1                     # below Min -> negative
    assert vbench_scores(raw)["subject_consistency"] < 0


# ---- video IO -----------------------------------------------------------------------------------------------
def test_mp4_round_trip_keeps_frames_and_fps(tmp_path):
    frames = moving_video(n=5)
    path = write_video(tmp_path / "v.mp4", frames, fps=12)
    video = read_video(path, prompt="a red square")
    assert video.frames.shape == frames.shape and video.fps == 12 and video.prompt == "a red square"
    assert np.abs(video.frames.astype(int) - frames.astype(int)).mean() < 2.0


def test_frame_folder(tmp_path):
    from PIL import Image

    frames = moving_video(n=3)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.png")
    video = read_video(tmp_path)
    assert np.array_equal(video.frames, frames)


def test_unreadable_video_names_the_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoReadError, match="broken.mp4"):
        read_video(bad)


def test_middle_sampling_matches_vbench():
    assert middle_frame_indices(10, 4) == [0, 3, 5, 8]
    assert middle_frame_indices(2, 4) == [0, 1, 1, 1]


# ---- eval command -------------------------------------------------------------------------------------------
def test_eval_command_scores_folder_and_survives_a_broken_file(tmp_path, capsys):
    import json as _json

    import pandas as pd

    from benchmarks import cli

    videos = tmp_path / "videos"
    write_video(videos / "a still scene-0.mp4", still_video(8), fps=8)
    write_video(videos / "a moving scene-0.mp4", moving_video(8), fps=8)
    (videos / "broken-0.mp4").write_bytes(b"junk")
    suite = tmp_path / "full_info.json"
    # Each dimension scores only the prompts tagged for it (VBench's load_dimension_info).
    suite.write_text(_json.dumps([
        {"prompt_en": "a still scene", "dimension": ["temporal_flickering", "dynamic_degree"]},
        {"prompt_en": "a moving scene", "dimension": ["dynamic_degree", "motion_smoothness"]},
        {"prompt_en": "broken", "dimension": ["dynamic_degree"]}]))
    out = tmp_path / "out"
    dims = "temporal_flickering,dynamic_degree,motion_smoothness"
    assert cli.main(["eval", "--videos", str(videos), "--prompts", str(suite), "--dims", dims, "--out", str(out)]) == 0
    per_video = pd.read_csv(out / "per_video.csv")
    failed = per_video[per_video["status"] == "failed"]
    assert set(failed["video"].map(lambda v: v.split("/")[-1])) == {"broken-0.mp4"}
    ok = per_video[per_video["status"] == "ok"].assign(name=lambda df: df["video"].str.split("/").str[-1])
    ok = ok.set_index(["dimension", "name"])
    assert ok.loc[("dynamic_degree", "a moving scene-0.mp4"), "score"] == 1.0
    assert ok.loc[("dynamic_degree", "a still scene-0.mp4"), "score"] == 0.0
    assert ("temporal_flickering", "a moving scene-0.mp4") not in ok.index     # not tagged for it
    assert ("motion_smoothness", "a still scene-0.mp4") not in ok.index
    assert ok.loc[("temporal_flickering", "a still scene-0.mp4"), "score"] == 1.0
    summary = pd.read_csv(out / "summary.csv").iloc[0]        # one row: the folder's videos
    assert summary["model"] == "external" and not summary["dynamic_degree_faithful"]   # OpenCV flow, not RAFT
    assert not summary["temporal_flickering_faithful"]        # its static filter ran on OpenCV flow, not RAFT
    assert summary["dynamic_degree_failed"] == 1
    assert _json.loads((out / "m4v_eval_results.json").read_text()) == {}   # nothing computed faithfully
    captured = capsys.readouterr()
    assert "broken-0.mp4" in captured.out


def test_eval_command_fails_when_no_video_can_be_scored(tmp_path, capsys):
    import pandas as pd

    from benchmarks import cli

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken-0.mp4").write_bytes(b"junk")
    out = tmp_path / "out"
    assert cli.main(["eval", "--videos", str(videos), "--dims", "temporal_flickering", "--out", str(out)]) == 1
    assert pd.read_csv(out / "per_video.csv")["status"].tolist() == ["failed"]   # the record is still written
    assert "no score computed" in capsys.readouterr().err
    (videos / "broken-0.mp4").unlink()
    (videos / "notes.txt").write_text("not a video")
    assert cli.main(["eval", "--videos", str(videos), "--out", str(out)]) == 2           # nothing to score
    assert f"--videos {videos}: no video files" in capsys.readouterr().err


def test_eval_command_rejects_unknown_dimension(tmp_path, capsys):
    from benchmarks import cli

    (tmp_path / "v").mkdir()
    assert cli.main(["eval", "--videos", str(tmp_path / "v"), "--dims", "sharpness", "--out", str(tmp_path)]) == 2
    assert "unknown" in capsys.readouterr().err


def test_bench_eval_reports_per_core_throughput(capsys):
    from benchmarks import cli

    assert cli.main(["bench-eval", "--videos", "2", "--frames", "4", "--height", "48", "--width", "64",
                     "--small", "--repeats", "1", "--no-warmup"]) == 0
    out = capsys.readouterr().out
    assert "frames_per_s_per_core" in out and "vbench per-dimension loop" in out and "speed-up" in out
    for dim in ("dynamic_degree", "human_action", "appearance_style", "subject_consistency"):
        assert dim in out


# ---- motion smoothness --------------------------------------------------------------------------------------
def test_motion_smoothness_formula_with_a_hand_interpolator():
    from evaluators.vbench.motion_smoothness import motion_smoothness_score

    frames = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    frames[1], frames[3] = 30, 90                            # odd frames; even frames are 0
    # "interpolate" = copy the left neighbour: MAEs are 30 and 90
    assert motion_smoothness_score(frames, interpolate=lambda a, b: a) == (255 - 60) / 255


def test_motion_smoothness_orders_videos_sensibly():
    from evaluators.vbench.motion_smoothness import motion_smoothness_score

    still = motion_smoothness_score(still_video(9))
    smooth = motion_smoothness_score(moving_video(9, step=2))
    rng = np.random.default_rng(0)
    jumpy = np.stack([np.roll(textured(), int(s), axis=1) for s in rng.integers(0, 40, 9)])
    assert still == 1.0
    assert smooth > motion_smoothness_score(jumpy)
    assert smooth > 0.97


# ---- world-oracle dimensions --------------------------------------------------------------------------------
def test_oracle_dimensions_score_ground_truth_renders_perfectly(tmp_path):
    import json as _json

    import pandas as pd

    from benchmarks import cli
    from m4v.world import Scene, prompt_suite, render

    suite = prompt_suite(n_per_kind=2, seed=3)
    videos = tmp_path / "videos"
    for entry in suite:
        frames = render(Scene.from_dict(entry["auxiliary_info"]["world"]))
        write_video(videos / f"{entry['prompt_en']}-0.mkv", frames, fps=8)
    (tmp_path / "suite.json").write_text(_json.dumps(suite))
    out = tmp_path / "out"
    assert cli.main(["eval", "--videos", str(videos), "--prompts", str(tmp_path / "suite.json"),
                     "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    per_video = pd.read_csv(out / "per_video.csv")
    for dim in ("object_class", "multiple_objects", "color", "spatial_relationship", "scene"):
        assert summary[dim] == 1.0, dim
        assert set(per_video.loc[per_video["dimension"] == dim, "backbone"]) == {"world-oracle"}
        assert not summary[f"{dim}_faithful"]
        assert summary[f"{dim}_n"] == 2                               # only the prompts written for it
    # appearance_style is VBench's CLIP cosine (here the shipped world-trained CLIP), not an oracle rule
    styles = per_video.loc[per_video["dimension"] == "appearance_style", "backbone"]
    assert all(b.startswith("clip:m4v-tiny-clip@") for b in styles) and summary["appearance_style_n"] == 2
    assert summary["dynamic_degree_n"] == 2                           # VBench: only the prompts tagged for it
    # The world checks read the true renders back exactly, each on the kinds it is written for.
    kinds_scored = {"world_colour_shape": 7, "world_shape": 8, "world_colour": 7, "world_count": 8,
                    "world_both_objects": 2, "world_relation": 1, "world_background": 1, "world_style": 1,
                    "world_motion": 1, "world_still": 1}
    for dim, kinds in kinds_scored.items():
        assert summary[dim] == 1.0, dim
        assert summary[f"{dim}_n"] == 2 * kinds, dim


def test_oracle_dimensions_notice_wrong_content():
    from evaluators.world_oracle import Color, ObjectClass
    from m4v.world import Scene, WorldObject, render

    wrong = render(Scene((WorldObject("circle", "blue", 32, 32, 9),), n_frames=16))
    video = Video(wrong, 8, source="w", aux={"auxiliary_info": {"color": {"color": "red", "object": "circle"},
                                                                   "object_class": {"object": "square"}}})
    assert Color().evaluate_video(video).score == 0.0
    assert ObjectClass().evaluate_video(video).score == 0.0


def test_backbone_imports_go_one_way():
    """evaluators/backbones.py imports the backbone classes to load them; the backbone modules import the shared
    loading helpers from evaluators/backbone_loading.py, which imports no evaluator module: no cycle."""
    import ast
    from pathlib import Path

    import evaluators.backbone_loading as loading
    import evaluators.backbones as backbones

    def imported(path):
        tree = ast.parse(Path(path).read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module} | {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert not {m for m in imported(loading.__file__) if m.startswith("evaluators")}
    root = Path(backbones.__file__).parent
    for name in ("aesthetic.py", "world_oracle.py", "vbench/flow.py", "vbench/motion_smoothness.py",
                 "vbench/imaging_quality.py", "vbench/human_action.py", "vbench/viclip.py"):
        assert "evaluators.backbones" not in imported(root / name), name
    for name in ("BackboneSpec", "load_state_file", "parse_backbone", "frame_key", "BACKBONE_KINDS"):
        assert getattr(backbones, name) is getattr(loading, name)   # still importable from evaluators.backbones
