"""Generation from the shipped checkpoints: the CLI writes a real video; the same seed gives the same video."""

import json

import numpy as np

from benchmarks.cli import main
from evaluators.video import read_video
from m4v.generate import TextToVideo
from m4v.recipes import WEIGHTS_DIR

SHIPPED = ("m4v-tiny", "dit-tiny", "m4v-tiny-reward", "vae-tiny", "text-tiny", "clip-tiny", "reward-tiny")


def test_shipped_models_are_present_small_and_record_their_command():
    total = 0
    for name in SHIPPED:
        record = json.loads((WEIGHTS_DIR / name / "training.json").read_text())
        assert record["model"] == name and record["command"].startswith(f"m4v-bench train --model {name} ")
        total += sum(p.stat().st_size for p in (WEIGHTS_DIR / name).rglob("*.safetensors"))
    assert total <= 50e6  # the budget for everything shipped


def test_generate_cli_writes_a_video(tmp_path):
    out = tmp_path / "video.mp4"
    assert main(["generate", "--model", "m4v-tiny", "--prompt", "a red square moves left on a grey background",
                 "--frames", "16", "--seed", "0", "--steps", "2", "--out", str(out)]) == 0
    video = read_video(out)
    assert video.frames.shape == (16, 64, 64, 3) and video.fps == 8
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["model"] == "m4v-tiny" and record["transformer_calls"] == 3 * 3 * 2  # latents x stages x steps


def test_generate_takes_text_encoder_and_vae_directories(tmp_path, capsys):
    from m4v.text import build_tiny_text_encoders

    prompt = ["--model", "m4v-tiny", "--prompt", "a blue circle", "--frames", "9", "--steps", "1"]
    assert main(["generate", *prompt, "--out", str(tmp_path / "named.mp4")]) == 0
    assert main(["generate", *prompt, "--text-encoder", str(WEIGHTS_DIR / "text-tiny"),
                 "--vae", str(WEIGHTS_DIR / "vae-tiny"), "--out", str(tmp_path / "dirs.mp4")]) == 0
    assert np.array_equal(read_video(tmp_path / "named.mp4").frames, read_video(tmp_path / "dirs.mp4").frames)
    assert json.loads((tmp_path / "dirs.json").read_text())["text_encoder"] == str(WEIGHTS_DIR / "text-tiny")
    narrow = build_tiny_text_encoders(tmp_path / "narrow", ["a", "blue", "circle"], t5_dim=16)
    assert main(["generate", *prompt, "--text-encoder", str(narrow), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert f"--text-encoder {narrow}: T5 width 16" in err and not (tmp_path / "x.mp4").exists()
    assert main(["generate", *prompt, "--vae", str(tmp_path / "none"), "--out", str(tmp_path / "x.mp4")]) == 2


def test_same_seed_same_video_and_models_differ():
    pipe = TextToVideo.from_pretrained("m4v-tiny")
    a, _, _ = pipe(["a blue circle"], frames=9, seed=3, steps=(2, 2, 2))
    b, _, _ = pipe(["a blue circle"], frames=9, seed=3, steps=(2, 2, 2))
    c, _, _ = TextToVideo.from_pretrained("dit-tiny")(["a blue circle"], frames=9, seed=3, steps=(2, 2, 2))
    assert a.shape == (1, 9, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generate_reports_a_missing_model(tmp_path, capsys):
    assert main(["generate", "--model", "no-such-model", "--prompt", "a star", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_world_quality_cli_writes_its_tables(tmp_path):
    import pandas as pd

    assert main(["world-quality", "--models", "m4v-tiny", "dit-tiny", "--per-kind", "1", "--steps", "1",
                 "--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "world_quality.csv")
    assert list(summary["model"]) == ["vae-tiny (reconstruction)", "m4v-tiny", "dit-tiny"]
    assert (summary["videos"] == 8).all() and summary["mixer_gflops_per_video"].iloc[1:].gt(0).all()
    assert summary["colour_shape_frames"].between(0, 1).all()
    assert (summary["colour_shape_ci_low"] <= summary["colour_shape_frames"] + 1e-9).all()
    assert (summary["colour_shape_frames"] <= summary["colour_shape_ci_high"] + 1e-9).all()
    paired = summary.set_index("model")
    assert paired.loc["dit-tiny", "paired_reference"] == "m4v-tiny"  # the first model is the reference
    assert abs(paired.loc["dit-tiny", "colour_shape_minus_reference"]
               - (paired.loc["dit-tiny", "colour_shape_frames"] - paired.loc["m4v-tiny", "colour_shape_frames"])) < 1e-9
    record = json.loads((tmp_path / "world_quality.json").read_text())
    assert record["git_commit"] and record["config"]["per_kind"] == 1
    from m4v.recipes import weights_path

    shipped = json.loads((weights_path("dit-tiny") / "training.json").read_text())["steps"]
    assert paired.loc["dit-tiny", "trained_steps"] == paired.loc["dit-tiny", "of_steps"] == shipped
    assert np.isnan(paired.loc["vae-tiny (reconstruction)", "trained_steps"])


def test_trained_steps_reads_runs_and_snapshots(tmp_path):
    from benchmarks.world_quality import trained_steps

    snapshot, bare = tmp_path / "step-000500", tmp_path / "copied"
    snapshot.mkdir()
    bare.mkdir()
    (snapshot / "training.json").write_text(json.dumps({"model": "dit-tiny", "step": 500, "of_steps": 2000}))
    assert trained_steps(str(snapshot)) == {"trained_steps": 500, "of_steps": 2000}
    assert all(np.isnan(v) for v in trained_steps(str(bare)).values())


def test_bootstrap_ci_matches_the_normal_approximation():
    from benchmarks.world_quality import bootstrap_ci

    # 400 videos, half right: the 95% interval of a proportion is 0.5 +- 1.96 sqrt(0.25 / 400) = 0.5 +- 0.049
    low, high = bootstrap_ci(np.arange(400) % 2)
    assert abs(low - 0.451) < 0.01 and abs(high - 0.549) < 0.01
    assert bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    assert all(np.isnan(bootstrap_ci([0.7])))


def test_paired_differences_pair_prompts_and_skip_object_class():
    import pandas as pd

    from benchmarks.world_quality import paired_differences

    rows = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 4, "kind": ["colour", "colour", "scene", "object_class"] * 2,
                         "object_frames": [0.0, 0.5, 1.0, 0.0, 0.25, 0.75, 1.0, 1.0]})
    out = paired_differences(rows, "a").set_index("model")
    # b - a on the three scored prompts: 0.25, 0.25, 0 -> mean 1/6; the object_class prompt (1.0 vs 0) is left out
    assert list(out.index) == ["b"] and out.loc["b", "paired_reference"] == "a"
    assert abs(out.loc["b", "colour_shape_minus_reference"] - 1 / 6) < 1e-12
    assert 0 <= out.loc["b", "paired_ci_low"] <= 1 / 6 <= out.loc["b", "paired_ci_high"] <= 0.25
