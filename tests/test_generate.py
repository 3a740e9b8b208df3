"""Generation from the shipped checkpoints: the CLI writes a real video; the same seed gives the same video."""

import json

import numpy as np
import pytest

from benchmarks.cli import main
from evaluators.video import read_video
from m4v.generate import TextToVideo
from m4v.recipes import WEIGHTS_DIR

SHIPPED = ("m4v-tiny", "dit-tiny", "vae-tiny", "text-tiny")
pytestmark = pytest.mark.skipif(not all((WEIGHTS_DIR / n / "config.json").is_file() or (WEIGHTS_DIR / n).is_dir()
                                        for n in SHIPPED), reason="shipped tiny weights not present")


def test_generate_cli_writes_a_video(tmp_path):
    out = tmp_path / "video.mp4"
    assert main(["generate", "--model", "m4v-tiny", "--prompt", "a red square moves left on a grey background",
                 "--frames", "16", "--seed", "0", "--steps", "2", "--out", str(out)]) == 0
    video = read_video(out)
    assert video.frames.shape == (16, 64, 64, 3) and video.fps == 8
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["model"] == "m4v-tiny" and record["transformer_calls"] == 3 * 3 * 2  # latents x stages x steps


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
    assert list(summary["model"]) == ["m4v-tiny", "dit-tiny"] and (summary["videos"] == 8).all()
    assert summary["mixer_gflops_per_video"].gt(0).all()
    assert summary["colour_shape_frames"].between(0, 1).all()
    record = json.loads((tmp_path / "world_quality.json").read_text())
    assert record["git_commit"] and record["config"]["per_kind"] == 1
