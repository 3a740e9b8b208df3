"""`train --data CAPTIONS` (issue 39 item 1): the user's videos, decoded with PyAV at the model's fps, frames and
size (centre crop), encoded once into a content-keyed cache; unreadable clips named and counted; an empty dataset
refused before any work. The mp4s are written here with PyAV."""

import av
import numpy as np
import pytest

from benchmarks.cli import main
from m4v.captioned_videos import Clip, ClipError, decode_clip, read_captions


def write_mp4(path, frames: np.ndarray, fps: int) -> None:
    """(T, H, W, 3) uint8 -> an H.264 mp4 at `fps` (lossless-ish: crf 0 keeps the test's colours)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "0"})
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv444p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def counting_clip(n: int, height: int = 48, width: int = 80) -> np.ndarray:
    """Frame i is grey level 8 i, with a red stripe on its left 10 columns (cut by a centre crop to a square)."""
    frames = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 8, height * width * 3).reshape(
        n, height, width, 3).copy()
    frames[:, :, :10] = (255, 0, 0)
    return frames


def test_decoding_resamples_by_time_and_centre_crops(tmp_path):
    write_mp4(tmp_path / "a.mp4", counting_clip(30), fps=24)
    got = decode_clip(Clip(tmp_path / "a.mp4", "x", None, "t"), frames=9, size=32, fps=8.0)
    assert got.shape == (9, 32, 32, 3) and got.dtype == np.uint8
    # 24 -> 8 fps: output frame k shows source frame 3k, grey level 24 k; the red stripe (left 10 of 80 columns)
    # lies outside the central 48x48 square
    centre = got[:, 8:24, 8:24].astype(float).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(centre, 24 * np.arange(9), atol=3)
    assert (got[..., 0].astype(int) - got[..., 1]).max() < 10   # no red left anywhere
    # the row's fps overrides the container's: read as 12 fps, output frame k is source frame 1.5k, held
    slow = decode_clip(Clip(tmp_path / "a.mp4", "x", 12.0, "t"), frames=5, size=32, fps=8.0)
    np.testing.assert_allclose(slow[:, 8:24, 8:24].astype(float).mean(axis=(1, 2, 3)), [0, 8, 24, 32, 48], atol=3)
    with pytest.raises(ClipError, match="too short"):
        decode_clip(Clip(tmp_path / "a.mp4", "x", None, "t"), frames=17, size=32, fps=8.0)   # 1.25 s < 2.1 s


def test_train_on_a_folder_of_videos_names_bad_clips_and_reuses_the_cache(tmp_path, capsys):
    data = tmp_path / "clips"
    data.mkdir()
    write_mp4(data / "red.mp4", counting_clip(60), fps=24)
    write_mp4(data / "tall.mp4", counting_clip(30, height=96, width=64), fps=12)
    (data / "notes.mp4").write_text("not a video")
    (data / "captions.jsonl").write_text(
        '{"path": "red.mp4", "text": "a red square moves right"}\n'
        '{"path": "tall.mp4", "text": "a blue circle", "fps": 12}\n'
        '{"path": "notes.mp4", "text": "broken"}\n'
        '{"path": "gone.mp4", "text": "missing"}\n')
    args = ["train", "--model", "dit-tiny", "--data", str(data / "captions.jsonl"), "--steps", "2", "--batch", "2",
            "--quiet"]
    assert main([*args, "--out", str(tmp_path / "runs" / "a")]) == 0
    err = capsys.readouterr().err
    assert sum("notes.mp4: not a readable video" in line for line in err.splitlines()) == 1, err
    assert sum("gone.mp4: cannot read" in line for line in err.splitlines()) == 1, err
    assert "2 clips: 2 encoded" in err and "0 from the cache" in err and "2 unreadable" in err, err
    assert len(list((tmp_path / "runs" / "video_latents").glob("*.safetensors"))) == 2
    assert (tmp_path / "runs" / "a" / "model.safetensors").is_file()
    # a second run beside it encodes nothing again
    assert main([*args, "--out", str(tmp_path / "runs" / "b")]) == 0
    assert "2 clips: 0 encoded" in capsys.readouterr().err


def test_an_empty_dataset_is_refused_before_any_work_and_data_is_no_abbreviation(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("path,text\n")
    assert main(["train", "--model", "dit-tiny", "--data", str(tmp_path / "empty.csv"), "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("empty.csv: no clips (an empty dataset trains nothing)") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    (tmp_path / "bad.csv").write_text("file,caption\na.mp4,x\n")
    with pytest.raises(ValueError, match="columns path and text"):
        read_captions(tmp_path / "bad.csv")
    assert main(["train", "--model", "clip-tiny", "--data", str(tmp_path / "empty.csv"), "--out",
                 str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith("empty.csv: no clips (an empty dataset trains nothing)")
    assert not (tmp_path / "run").exists()
    # the Wan recipes take --data too (a file, never read as an abbreviation of --dataset-size)
    assert main(["train", "--model", "wan-tiny", "--data", str(tmp_path / "empty.csv"), "--out",
                 str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().endswith("empty.csv: no clips (an empty dataset trains nothing)")
    assert not (tmp_path / "run").exists()


def test_the_vae_trains_on_windows_of_your_clips(tmp_path, capsys):
    write_mp4(tmp_path / "a.mp4", counting_clip(60), fps=24)
    (tmp_path / "captions.csv").write_text("path,text\na.mp4,grey levels\nmissing.mp4,gone\n")
    # step 1 on single frames, step 2 on 9-frame windows (the video phase), then the latent statistics
    assert main(["train", "--model", "vae-tiny", "--data", str(tmp_path / "captions.csv"), "--steps", "2",
                 "--option", "image_steps=1", "--option", "image_batch=2", "--batch", "1", "--quiet",
                 "--out", str(tmp_path / "vae")]) == 0
    err = capsys.readouterr().err
    assert "missing.mp4: not a readable video" in err and "1 clips decoded" in err and "1 unreadable" in err, err
    import json

    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert config["image_scale"] != 1.0   # measured on the clips
    assert json.loads((tmp_path / "vae" / "training.json").read_text())["config"]["data"].endswith("captions.csv")


def test_frames_and_captions_come_from_the_clips(tmp_path):
    """clip-tiny / text-tiny / reward-tiny's batches: every row is a decoded frame of the clip whose caption it
    carries, drawn by (seed, step) alone."""
    from m4v.captioned_videos import CaptionedFrames
    from m4v.world.dataset import to_model_video

    write_mp4(tmp_path / "grey.mp4", counting_clip(60), fps=24)
    red = np.zeros((40, 48, 48, 3), np.uint8)
    red[..., 0] = np.arange(40, dtype=np.uint8)[:, None, None] * 6
    write_mp4(tmp_path / "red.mp4", red, fps=16)
    clips = [Clip(tmp_path / "grey.mp4", "grey levels", None, "t:1"), Clip(tmp_path / "gone.mp4", "x", None, "t:2"),
             Clip(tmp_path / "red.mp4", "a red glow", None, "t:3")]
    frames = CaptionedFrames(clips, frames=17, size=32, quiet=True)
    assert frames.captions == ["grey levels", "a red glow"] and frames.pixels.shape == (2, 17, 32, 32, 3)
    images, captions = frames.batch(seed=0, step=3, batch=8)
    assert images.shape == (8, 3, 32, 32) and len(set(captions)) == 2
    for image, text in zip(images, captions):
        clip = to_model_video(frames.pixels[frames.captions.index(text)])          # (3, 17, H, W)
        assert min((clip[:, t] - image).abs().max() for t in range(17)) == 0
    again, _ = frames.batch(seed=0, step=3, batch=8)
    assert (again == images).all() and not (frames.batch(seed=0, step=4, batch=8)[0] == images).all()


@pytest.mark.parametrize("model", ["clip-tiny", "text-tiny", "reward-tiny"])
def test_frame_recipes_train_on_your_clips(tmp_path, capsys, model):
    write_mp4(tmp_path / "a.mp4", counting_clip(60), fps=24)
    (tmp_path / "captions.csv").write_text("path,text\na.mp4,a zebra dances slowly\nmissing.mp4,gone\n")
    out = tmp_path / model
    assert main(["train", "--model", model, "--data", str(tmp_path / "captions.csv"), "--steps", "2", "--batch", "2",
                 "--quiet", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "missing.mp4: not a readable video" in err and "1 clips decoded" in err and "1 unreadable" in err, err
    import json

    assert json.loads((out / "training.json").read_text())["config"]["data"] == str(tmp_path / "captions.csv")
    if model == "text-tiny":   # the captions' words join the world's vocabulary: none reads as <unk>
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out / "clip_text")
        ids = tokenizer("a zebra dances slowly").input_ids
        assert tokenizer.unk_token_id not in ids and len(ids) == 5, ids
