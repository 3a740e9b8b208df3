"""The Wan recipes beyond one machine (issue 39): `rows=` of the whole-latent flow-matching loss (every draw for the
whole batch, the forward on a rank's rows), and `train --data CAPTIONS` for wan-tiny and for `wan` (a Wan pipeline's
own VAE and T5). Their 2-rank torchrun runs are in tests/test_train_distributed.py."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_video_data import counting_clip, write_mp4  # tests/ is on sys.path

from benchmarks.cli import main


def test_row_split_reproduces_the_whole_batch_draw_and_loss():
    """rows=None is the whole batch as before (the draw read off the generator here by hand: sigma, shifted, then
    the noise); rows 0:2 and 2:4 see those same draws' rows, their forwards are the whole batch's rows, and the mean
    of the two equal halves' losses is the whole batch's loss."""
    from m4v.recipes.wan import flow_matching_sample
    from m4v.recipes.wan_tiny import wan_tiny_config
    from m4v.wan import build_wan

    torch.manual_seed(0)
    model = build_wan(wan_tiny_config("wan-tiny", dim=32, ffn_dim=64, num_heads=2, num_layers=2)).eval()
    torch.nn.init.normal_(model.proj_out.weight, std=0.02)   # the built head is zero: every prediction would be 0
    latents, text, shift = torch.randn(4, 16, 3, 4, 4), torch.randn(4, 5, 32), 3.0
    seed = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    g = seed()
    sigma = torch.rand(4, generator=g)
    sigma = shift * sigma / (1 + (shift - 1) * sigma)
    noise = torch.randn(latents.shape, generator=g)
    s = sigma.view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        expected_prediction = model((1 - s) * latents + s * noise, sigma * 1000, text)
        whole = flow_matching_sample(model, latents, text, seed(), shift)
        halves = [flow_matching_sample(model, latents, text, seed(), shift, rows=r) for r in (slice(0, 2), slice(2, 4))]
    expected_loss = torch.mean((expected_prediction - (noise - latents)) ** 2)
    assert expected_loss > 0.5 and torch.equal(whole.sigma, sigma)
    assert torch.equal(whole.prediction, expected_prediction) and torch.equal(whole.loss, expected_loss)
    for half, rows in zip(halves, (slice(0, 2), slice(2, 4))):
        assert torch.equal(half.sigma, sigma[rows]) and torch.equal(half.noisy, whole.noisy[rows])
        torch.testing.assert_close(half.prediction, whole.prediction[rows], rtol=1e-5, atol=1e-6)
    mean = (halves[0].loss + halves[1].loss) / 2
    torch.testing.assert_close(mean, whole.loss, rtol=1e-6, atol=0)
    assert abs(halves[0].loss - halves[1].loss) > 1e-3   # the halves differ: the mean is not a trivial match


def _clips(folder):
    """A folder with one readable 3-second clip and one missing one (JSONL captions)."""
    folder.mkdir()
    write_mp4(folder / "grey.mp4", counting_clip(60), fps=24)
    (folder / "captions.jsonl").write_text('{"path": "grey.mp4", "text": "a grey square fades in"}\n'
                                           '{"path": "gone.mp4", "text": "missing"}\n')
    return folder / "captions.jsonl"


def test_wan_tiny_trains_on_your_clips(tmp_path, capsys):
    captions = _clips(tmp_path / "clips")
    out = tmp_path / "runs" / "wan"
    assert main(["train", "--model", "wan-tiny", "--data", str(captions), "--steps", "2", "--batch", "2",
                 "--threads", "1", "--quiet", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert sum("gone.mp4: cannot read" in line for line in err.splitlines()) == 1, err
    assert "1 clips: 1 encoded" in err and "1 unreadable" in err, err
    assert json.loads((out / "training.json").read_text())["config"]["data"] == str(captions)
    (entry,) = (tmp_path / "runs" / "video_latents").glob("*.safetensors")
    from safetensors.torch import load_file

    assert load_file(str(entry))["latents"].shape == (16, 3, 8, 8)   # vae-tiny's latent of 17 frames at 64 px
    log = pd.read_csv(out / "loss.csv")
    assert len(log) == 2 and np.isfinite(log["loss"]).all()
    (tmp_path / "empty.csv").write_text("path,text\n")
    # refused before any work (wan-tiny's refusal: tests/test_video_data.py)
    assert main(["train", "--model", "m4v-wan-tiny-reward", "--data", str(tmp_path / "empty.csv"), "--out",
                 str(tmp_path / "refused")]) == 2
    assert capsys.readouterr().err.strip().endswith("empty.csv: no clips (an empty dataset trains nothing)")
    assert not (tmp_path / "refused").exists()


def test_wan_pipeline_trains_on_your_clips_through_its_own_encoders(tmp_path, capsys):
    """`train --model wan --init-from PIPE --data CAPTIONS`: each clip cached as the pipeline's own VAE latent and
    T5 features of its decoded frames (checked against the encoders called here), keyed by the prompt length too;
    the run's transformer moves."""
    from test_wan import build_tiny_wan_pipeline  # tests/ is on sys.path

    from m4v.captioned_videos import Clip, decode_clip
    from m4v.recipes.wan import WanPipelineEncoders
    from m4v.world.dataset import to_model_video

    torch.set_num_threads(1)
    pipe = build_tiny_wan_pipeline(tmp_path / "pipe")
    captions = _clips(tmp_path / "clips")
    runs = tmp_path / "runs"
    args = ["train", "--model", "wan", "--init-from", str(pipe), "--data", str(captions), "--steps", "2",
            "--batch", "2", "--quiet"]
    assert main([*args, "--option", "text_len=16", "--out", str(runs / "a")]) == 0
    err = capsys.readouterr().err
    assert "gone.mp4: cannot read" in err and "1 clips: 1 encoded" in err and "1 unreadable" in err, err
    from safetensors.torch import load_file

    (entry,) = [load_file(str(p)) for p in (runs / "video_latents").glob("*.safetensors")]
    encoders = WanPipelineEncoders(pipe, text_len=16)
    pixels = decode_clip(Clip(captions.parent / "grey.mp4", "", None, "t"), frames=17, size=64)
    latents, text = encoders.encode(to_model_video(pixels[None]), ["a grey square fades in"])
    assert latents.shape == (1, 16, 5, 8, 8) and text.shape == (1, 16, 16) and latents.std() > 0
    torch.testing.assert_close(entry["latents"], latents[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entry["tokens"], text[0], rtol=1e-5, atol=1e-6)
    record = json.loads((runs / "a" / "training.json").read_text())
    assert record["config"]["data"] == str(captions) and record["config"]["text_len"] == 16
    assert np.isfinite(pd.read_csv(runs / "a" / "loss.csv")["loss"]).all()
    before = load_file(str(pipe / "transformer" / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(runs / "a" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert not torch.equal(before["blocks.0.attn1.to_q.weight"], after["blocks.0.attn1.to_q.weight"])
    # another prompt length is another encoding of the same clip: encoded again, not read from the cache
    assert main([*args, "--steps", "1", "--option", "text_len=8", "--out", str(runs / "b")]) == 0
    assert "1 clips: 1 encoded" in capsys.readouterr().err
    assert len(list((runs / "video_latents").glob("*.safetensors"))) == 2
    (tmp_path / "empty.csv").write_text("path,text\n")
    assert main(["train", "--model", "wan", "--init-from", str(pipe), "--data", str(tmp_path / "empty.csv"),
                 "--out", str(runs / "refused")]) == 2
    assert capsys.readouterr().err.strip().endswith("empty.csv: no clips (an empty dataset trains nothing)")
    assert not (runs / "refused").exists()


def test_the_wan_recipes_split_by_rows_and_a_batch_that_does_not_divide_is_refused():
    """Under torchrun every Wan recipe splits its batch (none is refused as unsplittable any more), and a global
    batch the ranks cannot share evenly is one line naming --batch (benchmarks/train.py's check before any step)."""
    from benchmarks.train import _check_data_parallel
    from m4v.recipes import get_recipe

    assert all(get_recipe(name).data_parallel for name in ("wan", "wan-tiny", "m4v-wan-tiny", "m4v-wan-tiny-reward"))
    recipe = get_recipe("wan-tiny")("wan-tiny", batch=3, dataset_size=4)
    recipe.rank, recipe.world_size = 0, 2
    with pytest.raises(ValueError, match="^--batch 3: the global batch must split evenly across 2 ranks$"):
        _check_data_parallel(recipe, "wan-tiny")
    recipe.options["batch"] = 4
    _check_data_parallel(recipe, "wan-tiny")
    assert recipe.my_rows(4) == slice(0, 2)
    recipe.rank = 1
    assert recipe.my_rows(4) == slice(2, 4)
