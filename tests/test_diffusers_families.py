"""`diffusers:` beyond TextToVideoSD (issue 37 §8): a tiny random WanPipeline (Wan2.1's classes: WanTransformer3DModel,
AutoencoderKLWan, a UMT5 encoder) and a tiny CogVideoXPipeline, built offline from configs with a byte-level
tokenizer made here, saved with save_pretrained and run through the CLI. Wan's loader needs `accelerate`
(`low_cpu_mem_usage` with fp32-kept modules), which the diffusers extra now installs."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from in_process import cli

REPO = Path(__file__).resolve().parents[1]
SUITE = """
name = "families"
models = {models}
prompts = "world"
per_kind = 1
prompt_limit = 2
batch = 2
seed = 0
evaluators = ["frame_consistency"]
[sampling]
frames = 9
height = 32
width = 32
steps = [1, 1, 1]
"""
OPTIONS = "?steps=1&guidance=3&max_sequence_length=16"


def byte_tokenizer():
    """A fast tokenizer over the 256 byte symbols (GPT-2's byte-level alphabet), pad / eos / unk first: any prompt
    tokenizes, nothing downloaded. -> (tokenizer, vocabulary size)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *symbols])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=64), len(vocab)


def build_wan(path: Path) -> Path:
    """Wan2.1's pipeline at toy size (diffusers' own test sizes for the transformer and VAE)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tokenizer, vocab = byte_tokenizer()
    text = UMT5EncoderModel(UMT5Config(vocab_size=vocab, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                                       relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                       decoder_start_token_id=0))
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=16, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    WanPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0)).save_pretrained(path)
    return path


def build_cogvideox(path: Path) -> Path:
    """CogVideoX's pipeline at toy size (a T5 encoder, 4x temporal compression: 9 frames -> 3 latent frames)."""
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer, vocab = byte_tokenizer()
    text = T5EncoderModel(T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=4,
                                   relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))
    transformer = CogVideoXTransformer3DModel(num_attention_heads=4, attention_head_dim=8, in_channels=4,
                                              out_channels=4, time_embed_dim=2, text_embed_dim=32, num_layers=1,
                                              sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
                                              temporal_compression_ratio=4, max_text_seq_length=16)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
                                 up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                 latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                 temporal_compression_ratio=4)
    CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer,
                      scheduler=CogVideoXDDIMScheduler()).save_pretrained(path)
    return path


FAMILIES = {"wan": ("WanPipeline", build_wan), "cogvideox": ("CogVideoXPipeline", build_cogvideox)}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Both pipelines built once and run once through `m4v-bench run` (one suite, both models)."""
    pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp("families")
    paths = {name: build(root / name) for name, (_, build) in FAMILIES.items()}
    specs = {name: f"diffusers:{path}{OPTIONS}" for name, path in paths.items()}
    suite = root / "suite.toml"
    suite.write_text(SUITE.format(models=json.dumps(list(specs.values()))))
    done = cli("run", "--suite", suite, "--out", root / "out")
    return paths, specs, root / "out", done


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_pipeline_family_runs_through_the_cli_with_its_own_frames(families, family):
    import pandas as pd
    import torch
    from diffusers import DiffusionPipeline

    from benchmarks.generators.base import per_video_seed
    from benchmarks.run.suites import load_suite_file, prompt_entries

    paths, specs, out, done = families
    assert done.returncode == 0, done.stderr[-3000:]
    per_video = pd.read_csv(out / "per_video.csv")
    name = f"diffusers:{family}{OPTIONS}"
    mine = per_video[per_video["model"] == name]
    assert len(mine) == 2 and set(mine["status"]) == {"ok"}, per_video[["model", "status", "reason"]].to_string()
    checkpoints = json.loads((out / "results.json").read_text())["provenance"]["checkpoints"]
    assert checkpoints[name]["fingerprint"]["pipeline"] == FAMILIES[family][0]
    # the pipeline called directly (a generator per video, the run's seeds) gives the frames the run scored
    suite = load_suite_file(out.parent / "suite.toml")
    prompts = [e["prompt_en"] for e in prompt_entries(suite)]
    pipe = DiffusionPipeline.from_pretrained(str(paths[family]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the run's threads (OMP_NUM_THREADS=1): CPU float sums depend on the thread count
    try:
        direct = pipe(prompt=prompts, generator=[torch.Generator().manual_seed(per_video_seed(0, p, 0))
                                                 for p in range(len(prompts))], num_frames=9, height=32, width=32,
                      num_inference_steps=1, guidance_scale=3.0, max_sequence_length=16, output_type="np").frames
    finally:
        torch.set_num_threads(threads)
    assert np.asarray(direct).shape == (2, 9, 32, 32, 3)
    expected = {hashlib.sha256(np.round(np.asarray(v, np.float64) * 255).astype(np.uint8).tobytes()).hexdigest()
                for v in direct}
    cached = set()
    for npz in (out / "cache" / "samples").glob("*/frames.npz"):
        with np.load(npz) as z:
            cached.add(hashlib.sha256(np.ascontiguousarray(z["frames"]).tobytes()).hexdigest())
    assert expected <= cached


def test_the_diffusers_extra_installs_accelerate():
    """Wan's from_pretrained needs accelerate; a fresh `pip install -e '.[diffusers]'` must bring it."""
    try:
        import tomllib
    except ModuleNotFoundError:   # Python 3.10
        import tomli as tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["diffusers"]
    assert any(req.split(">")[0].split("=")[0].strip() == "accelerate" for req in extra), extra
