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
