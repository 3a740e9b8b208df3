"""Any generator in (issue 30): the Generator protocol behind every model spec, each adapter through `m4v-bench run`
(a Python factory, a tiny random-weight diffusers pipeline built offline, a shell command), compute measured for
any generator (FlopCounterMode against a hand count), cache / resume / torchrun with an adapter, the controls and
the floor flag, bad specs (one line naming the spec, exit 2) and bad outputs (failed rows naming the cause)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.cli import main
from benchmarks.generators import GeneratorError, check_frames, per_video_seed, resolve_generators
from benchmarks.run.suites import load_suite_file, prompt_entries

REPO = Path(__file__).resolve().parent.parent
SUITE = """
name = "generators"
models = {models}
prompts = "world"
per_kind = 1
prompt_limit = {prompts}
batch = 2
seed = {seed}
evaluators = {evaluators}
[sampling]
frames = 9
height = {size}
width = {size}
steps = [1, 1, 1]
"""
M, K, N = 16, 32, 48   # the one matmul of a video of the python generator below

GENERATOR_PY = f'''
import numpy as np
import torch

M, K, N = {M}, {K}, {N}


class Matmul:
    """Batched: one (M, K) @ (K, N) matmul per video sets its grey level."""

    max_batch = 2

    def __init__(self, scale=1.0):
        self.scale = scale

    def fingerprint(self):
        return {{"scale": self.scale}}

    def generate(self, prompts, seeds, sampling):
        videos = []
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            a, b = torch.rand(M, K, generator=g), torch.rand(K, N, generator=g)
            level = float(((a @ b).mean() / K * self.scale).clamp(0, 1))
            videos.append(torch.full((sampling.frames, sampling.height, sampling.width, 3), level))
        return videos


def make(scale=1.0):
    return Matmul(scale)


def plain():
    def call(prompt, seed, sampling):
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (sampling.frames, sampling.height, sampling.width, 3), dtype=np.uint8)
    return call


def raises():
    raise RuntimeError("no weights here")


def bad(kind="nan"):
    def call(prompt, seed, sampling):
        shape = (sampling.frames, sampling.height, sampling.width, 3)
        return {{"nan": np.full(shape, np.nan, np.float32), "shape": np.zeros(shape[1:], np.uint8),
                "dtype": np.zeros(shape, np.int64)}}[kind]
    return call
'''

COMMAND_PY = '''
import argparse
import sys

import av
import numpy as np

p = argparse.ArgumentParser()
for flag in ("--prompt", "--out"):
    p.add_argument(flag, required=True)
for flag in ("--seed", "--frames", "--size"):
    p.add_argument(flag, type=int, required=True)
a = p.parse_args()
if "FAIL" in a.prompt:
    sys.exit("this script refuses the prompt")
colour = np.random.default_rng(a.seed).integers(0, 256, 3).astype(np.uint8)
with av.open(a.out, mode="w") as container:
    stream = container.add_stream("libx264", rate=8)
    stream.width = stream.height = a.size
    stream.pix_fmt, stream.options = "yuv444p", {"crf": "0"}
    for _ in range(a.frames):
        frame = np.ascontiguousarray(np.broadcast_to(colour, (a.size, a.size, 3)))
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
'''


def write_suite(tmp_path, models, prompts=2, seed=0, size=64, evaluators=("world_colour_shape", "compute"),
                name="suite.toml", extra=""):
    path = tmp_path / name
    path.write_text(SUITE.format(models=json.dumps(list(models)), prompts=prompts, seed=seed, size=size,
                                 evaluators=json.dumps(list(evaluators))) + extra)
    return path


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "my_generator.py"
    path.write_text(GENERATOR_PY)
    return path


def cached_frames(cache: Path) -> dict:
    """{sha256 of the frames: frames} of every video in a cache."""
    out = {}
    for npz in sorted((cache / "samples").glob("*/frames.npz")):
        with np.load(npz) as z:
            out[hashlib.sha256(z["frames"].tobytes()).hexdigest()] = z["frames"]
    return out


def digest(frames) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def run(tmp_path, suite, out, *extra, code=0):
    assert main(["run", "--suite", str(suite), "--out", str(out), "--trust-suite-code", *extra]) == code
    return pd.read_csv(out / "per_video.csv")


# ---------------------------------------------------------------- the protocol, the shipped models unchanged

def test_shipped_models_keep_their_seed_rule_and_cache_keys(tmp_path):
    """A shipped model's sample key and seed are what they were before generators existed (the committed
    baselines' samples): batch b of sample i with seed + 1000 i + b, keyed on checkpoint/config/VAE/text encoder."""
    from benchmarks.core.hashing import file_sha256, key_of, tree_sha256
    from benchmarks.core.provenance import cpu_kernels
    from m4v.checkpoint import weights_path

    suite_path = write_suite(tmp_path, ["dit-tiny"], prompts=3, seed=5, evaluators=("frame_consistency",))
    per_video = run(tmp_path, suite_path, tmp_path / "o")
    suite = load_suite_file(suite_path)
    prompts = [e["prompt_en"] for e in prompt_entries(suite)]
    batches = [prompts[i:i + 2] for i in range(0, len(prompts), 2)]
    d = weights_path("dit-tiny")
    shared = {"checkpoint": file_sha256(d / "model.safetensors"), "config": file_sha256(d / "config.json"),
              "vae": tree_sha256(weights_path("vae-tiny")), "text_encoder": tree_sha256(weights_path("text-tiny"))}
    expected = {key_of({**shared, "kernels": cpu_kernels(), "prompt": p, "batch": batch, "position": j, "seed": 5 + b,
                        "sampling": suite.definition()["sampling"]})
                for b, batch in enumerate(batches) for j, p in enumerate(batch)}
    assert {p.name for p in (tmp_path / "o" / "cache" / "samples").iterdir()} == expected
    seeds = per_video.drop_duplicates("prompt").set_index("prompt")["seed"]
    assert [seeds[p] for p in prompts] == [5, 5, 6]


def test_check_frames_accepts_uint8_and_unit_floats_and_names_every_other_problem():
    frames = np.random.default_rng(0).random((3, 16, 17, 3))
    assert (check_frames(frames, "x") == np.round(frames * 255).astype(np.uint8)).all()
    assert check_frames(np.zeros((1, 16, 16, 3), np.uint8), "x").dtype == np.uint8
    for bad, problem in [(np.zeros((2, 2, 3)), "shape"), (np.zeros((1, 16, 16, 3), np.int64), "dtype"),
                         (np.full((1, 16, 16, 3), np.nan), "NaN"), (np.full((1, 16, 16, 3), 2.0), r"expected \[0, 1\]"),
                         (np.zeros((1, 15, 16, 3), np.uint8), "under the 16 px"), ("frames", "not an array")]:
        with pytest.raises(Exception, match=problem) as info:
            check_frames(bad, "python:m:f")
        assert "python:m:f" in str(info.value)


# ---------------------------------------------------------------- python:

def test_python_factory_through_the_cli_counts_its_flops_by_hand_and_honours_per_video_seeds(tmp_path, module):
    spec = f"python:{module}:make?scale=1.0"
    out = tmp_path / "o"
    per_video = run(tmp_path, write_suite(tmp_path, [spec, f"python:{module}:plain"], prompts=3), out)
    assert "failed" not in set(per_video["status"])
    # a generator outside torch (numpy) cannot be counted: its compute row is declined with the reason
    plain_compute = per_video[(per_video["dimension"] == "compute") & (per_video["model"] != spec)]
    assert set(plain_compute["status"]) == {"declined"} and plain_compute["reason"].str.contains("no torch").all()
    # FlopCounterMode around one real call = the hand count of its one matmul: 2 M K N per video
    compute = per_video[(per_video["dimension"] == "compute") & (per_video["model"] == spec)]
    assert len(compute) == 3 and np.allclose(compute["score"], 2 * M * K * N / 1e12, rtol=1e-12)
    generation = pd.read_csv(out / "generation.csv")
    assert (generation["seconds"] > 0).all() and generation["mixer_tflops"].isna().all()
    # per-video seeds (seed + 100000 p + i): the plain callable's videos are exactly its direct calls
    sys.path.insert(0, str(module.parent))
    try:
        import my_generator
    finally:
        sys.path.remove(str(module.parent))
    suite = load_suite_file(tmp_path / "suite.toml")
    call = my_generator.plain()
    direct = {digest(call(e["prompt_en"], per_video_seed(0, p, 0), suite.sampling))
              for p, e in enumerate(prompt_entries(suite))}
    assert direct <= set(cached_frames(out / "cache"))
    plain_rows = per_video[per_video["model"] == f"python:{module}:plain"].drop_duplicates("prompt")
    assert list(plain_rows["seed"]) == [0, 100000, 200000]
    provenance = json.loads((out / "results.json").read_text())["provenance"]["checkpoints"]
    assert provenance[f"python:{module}:make?scale=1.0"]["fingerprint"]["object"] == {"scale": 1.0}


def test_bad_outputs_are_failed_rows_naming_the_cause_and_nothing_else_is_lost(tmp_path, module, capsys):
    models = [f"python:{module}:bad?kind=nan", f"python:{module}:bad?kind=shape", f"python:{module}:bad?kind=dtype",
              f"python:{module}:plain"]
    out = tmp_path / "o"
    per_video = run(tmp_path, write_suite(tmp_path, models), out, code=1)
    reasons = per_video.groupby("model")["reason"].first()
    assert "NaN" in reasons[models[0]] and "shape" in reasons[models[1]] and "dtype int64" in reasons[models[2]]
    assert all(reasons[m].startswith("generation failed") for m in models[:3])
    assert "failed" not in set(per_video[per_video["model"] == models[3]]["status"])
    assert set(per_video[per_video["model"] == models[0]]["dimension"]) == {"world_colour_shape", "compute"}
    assert "video(s) not generated" in capsys.readouterr().err
    assert len(cached_frames(out / "cache")) == 2   # only the good videos: a rerun retries the failed ones


# ---------------------------------------------------------------- cache, resume, torchrun with an adapter

def test_an_adapter_cached_uncached_resumed_and_under_torchrun_gives_one_table(tmp_path, module, master_port,
                                                                                one_thread, capsys):
    """The one-process runs in this process at torchrun's one thread a rank (float sums depend on threads)."""
    path = write_suite(tmp_path, [f"python:{module}:make", f"python:{module}:plain", "control:noise"], prompts=3,
                       evaluators=("world_colour_shape", "frame_consistency"))
    run(tmp_path, path, tmp_path / "u", "--no-cache")
    reference = (tmp_path / "u" / "per_video.csv").read_bytes()
    for attempt in ("first", "rerun"):
        capsys.readouterr()
        run(tmp_path, path, tmp_path / "c")
        assert (tmp_path / "c" / "per_video.csv").read_bytes() == reference, attempt
    assert ", 0 generated" in capsys.readouterr().out   # the rerun's
    for lost in sorted((tmp_path / "c" / "cache" / "samples").iterdir())[::2]:
        shutil.rmtree(lost)
    run(tmp_path, path, tmp_path / "c")
    assert (tmp_path / "c" / "per_video.csv").read_bytes() == reference
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(master_port), "-m", "benchmarks.cli", "run", "--suite", str(path), "--out",
                          str(tmp_path / "two"), "--no-cache", "--trust-suite-code"], cwd=REPO, capture_output=True,
                         text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "two" / "per_video.csv").read_bytes() == reference


# ---------------------------------------------------------------- cmd:

def test_a_command_through_the_cli_is_timed_and_its_flops_declined(tmp_path):
    script = tmp_path / "make_video.py"
    script.write_text(COMMAND_PY)
    spec = f"cmd:{sys.executable} {script} --prompt {{prompt}} --seed {{seed}} --out {{out}} --frames {{frames}} " \
           "--size {height}"
    out = tmp_path / "o"
    per_video = run(tmp_path, write_suite(tmp_path, [spec]), out)
    assert set(per_video["model"]) == {"cmd:make_video.py"}
    compute = per_video[per_video["dimension"] == "compute"]
    assert set(compute["status"]) == {"declined"} and compute["reason"].str.contains("a command").all()
    assert set(per_video[per_video["dimension"] == "world_colour_shape"]["status"]) == {"ok"}
    generation = pd.read_csv(out / "generation.csv")
    assert (generation["seconds"] > 0).all() and generation["tflops"].isna().all()
    assert generation["peak_mb"].isna().all()   # the process' memory is not this one's: declined
    # the video is the script's: its colour from the per-video seed
    assert all(f.shape == (9, 64, 64, 3) for f in cached_frames(out / "cache").values())
    # (through H.264's RGB -> YUV -> RGB: within 2 levels)
    read = sorted(f[0, 0, 0].astype(int).tolist() for f in cached_frames(out / "cache").values())
    colours = sorted(np.random.default_rng(per_video_seed(0, p, 0)).integers(0, 256, 3).tolist() for p in range(2))
    assert np.abs(np.array(read) - np.array(colours)).max() <= 2
    summary = pd.read_csv(out / "summary.csv")
    assert summary["seconds_per_video"].iloc[0] > 0 and np.isnan(summary["tflops_per_video"].iloc[0])


# ---------------------------------------------------------------- bad specs

@pytest.mark.parametrize("spec, problem", [
    ("python:no_such_module_xyz:make", "cannot import no_such_module_xyz"),
    ("python:{module}:missing", "no callable 'missing'"),
    ("python:{module}:raises", "raised RuntimeError: no weights here"),
    ("python:{module}", "expected python:MODULE:FACTORY"),
    ("diffusers:{tmp}/no-pipeline", "model_index.json is missing"),
    ("cmd:no-such-program-xyz {{out}}", "program 'no-such-program-xyz' not found"),
    ("cmd:echo {{prompt}}", "needs {{out}}"),
    ("cmd:echo {{nope}} {{out}}", "bad placeholder"),
    ("control:bogus", "unknown control 'bogus'"),
    ("control:static?of=m4v-tiny", "only first-frame and shuffled-prompts take of"),
    ("no-such-model-dir", "no-such-model-dir"),
])
def test_a_bad_spec_is_one_line_naming_it_and_exit_2_before_any_work(tmp_path, module, capsys, spec, problem):
    spec = spec.format(module=module, tmp=tmp_path)
    out = tmp_path / "o"
    assert main(["run", "--suite", str(write_suite(tmp_path, [spec])), "--out", str(out), "--trust-suite-code"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and spec in err and problem.format() in err, err
    assert not out.exists()   # nothing was done


def test_without_diffusers_one_line_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "diffusers", None)   # import diffusers -> ImportError
    with pytest.raises(GeneratorError, match=r"pip install -e '\.\[diffusers\]'"):
        resolve_generators([f"diffusers:{tmp_path / 'pipe'}"])


# ---------------------------------------------------------------- diffusers:

def byte_level_clip_tokenizer(path: Path):
    """A CLIPTokenizer over GPT-2's byte-to-unicode table (every byte a token, so any prompt tokenizes without
    merges), its vocab.json / merges.txt written beside `path`: the tiny pipelines' tokenizer, nothing downloaded."""
    from transformers import CLIPTokenizer

    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars = [chr(c) for c in printable] + [chr(256 + n) for n in range(256 - len(printable))]
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", "<|pad|>", *chars,
                                         *(c + "</w>" for c in chars)])}
    files = path.parent / f"{path.name}-tokenizer-files"
    files.mkdir(parents=True)
    (files / "vocab.json").write_text(json.dumps(vocab))
    (files / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=32,
                         pad_token="<|pad|>")


def build_tiny_pipeline(path: Path) -> Path:
    """A random-weight diffusers text-to-video pipeline from small configs, its tokenizer built here (a byte-level
    vocabulary, no merges), saved with save_pretrained: nothing downloaded."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(block_out_channels=(8, 8), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=8,
                                attention_head_dim=4, norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=(8,), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D"],
                        sample_size=32, norm_num_groups=2)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=2, hidden_size=8,
                                        intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
                                        vocab_size=600, projection_dim=8, max_position_embeddings=32))
    tokenizer = byte_level_clip_tokenizer(path)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=False)
    TextToVideoSDPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                          scheduler=scheduler).save_pretrained(path)
    return path


def test_a_diffusers_pipeline_through_the_cli_gives_the_pipelines_own_frames(tmp_path):
    pytest.importorskip("diffusers")
    import torch
    from diffusers import DiffusionPipeline
    from torch.utils.flop_counter import FlopCounterMode

    path = build_tiny_pipeline(tmp_path / "tiny-t2v")
    spec = f"diffusers:{path}?steps=1&guidance=3"
    out = tmp_path / "o"
    suite_path = write_suite(tmp_path, [spec], size=32, evaluators=("frame_consistency", "compute"))
    per_video = run(tmp_path, suite_path, out)
    assert set(per_video["status"]) == {"ok"} and set(per_video["model"]) == {"diffusers:tiny-t2v?steps=1&guidance=3"}
    # the pipeline called directly, the same batch and a generator per video, gives the same frames
    suite = load_suite_file(suite_path)
    prompts = [e["prompt_en"] for e in prompt_entries(suite)]
    pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(prompt=prompts, generator=[torch.Generator().manual_seed(per_video_seed(0, p, 0))
                                             for p in range(len(prompts))],
                  num_frames=9, height=32, width=32, num_inference_steps=1, guidance_scale=3.0, output_type="np").frames
    expected = {digest(np.round(v.astype(np.float64) * 255).astype(np.uint8)) for v in direct}
    assert set(cached_frames(out / "cache")) == expected
    # compute: FlopCounterMode around one direct call of one video equals the run's count per video
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        pipe(prompt=prompts[:1], generator=[torch.Generator().manual_seed(0)], num_frames=9, height=32, width=32,
             num_inference_steps=1, guidance_scale=3.0, output_type="np")
    compute = per_video[per_video["dimension"] == "compute"]
    assert counter.get_total_flops() > 0 and np.allclose(compute["score"], counter.get_total_flops() / 1e12)
    provenance = json.loads((out / "results.json").read_text())["provenance"]["checkpoints"]
    options = next(iter(provenance.values()))["fingerprint"]["options"]
    assert options == {"num_inference_steps": 1, "guidance_scale": 3}


# ---------------------------------------------------------------- controls and the floor flag

def test_controls_are_floors_and_report_flags_metrics_not_separated_from_them(tmp_path, capsys):
    of = "reconstruction:vae-tiny"
    models = [of, f"control:shuffled-prompts?of={of}", f"control:first-frame?of={of}"]
    out = tmp_path / "o"
    per_video = run(tmp_path, write_suite(tmp_path, models, prompts=3, evaluators=("world_colour_shape",)), out,
                    "--controls", "static,noise")
    names = ["vae-tiny (reconstruction)", "control:shuffled-prompts(vae-tiny (reconstruction))",
             "control:first-frame(vae-tiny (reconstruction))", "control:static", "control:noise"]
    assert list(dict.fromkeys(per_video["model"])) == names
    # shuffled: the ceiling's video of the next prompt, labelled with this one (same frames, same file)
    suite = load_suite_file(tmp_path / "suite.toml")
    prompts = [e["prompt_en"] for e in prompt_entries(suite)]
    videos = out / "videos"
    for i, prompt in enumerate(prompts):
        shown = (videos / names[1] / f"{prompt}-0.mp4").read_bytes()
        assert shown == (videos / names[0] / f"{prompts[(i + 1) % 3]}-0.mp4").read_bytes()
    report = (out / "report.md").read_text()
    assert "## Validity floors" in report and "ceiling" in report
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert summary.loc["control:static", "world_colour_shape"] == 0
    floors = report[report.index("## Validity floors"):]
    line = next(line for line in floors.splitlines() if line.startswith("| world_colour_shape |"))
    # the reconstruction reads its own prompts (ceiling); with 3 prompts its interval may touch a floor's: the
    # flag follows the intervals, checked independently here
    low = summary.loc[names[0], "world_colour_shape_ci_low"]
    highest_floor = summary.loc[names[1:], "world_colour_shape_ci_high"].max()
    assert (f"⚠ {names[0]}" in line) == (not low > highest_floor)


def test_floor_flags_follow_the_intervals():
    from benchmarks.reporting.floors import floor_flags

    summary = pd.DataFrame([
        {"model": "good", "world_count": 0.9, "world_count_ci_low": 0.8, "world_count_ci_high": 1.0},
        {"model": "weak", "world_count": 0.5, "world_count_ci_low": 0.2, "world_count_ci_high": 0.7},
        {"model": "bad", "world_count": 0.1, "world_count_ci_low": 0.0, "world_count_ci_high": 0.2},
        {"model": "control:noise", "world_count": 0.3, "world_count_ci_low": 0.25, "world_count_ci_high": 0.35},
    ])
    flags = floor_flags(summary, {"control:noise": "floor"})
    assert flags == {"world_count": {"weak": ["control:noise"], "bad": ["control:noise"]}}


def test_derived_controls_hold_the_first_frame_and_relabel_with_the_next_prompt():
    from benchmarks.generators.controls import ControlGenerator

    base = resolve_generators(["control:noise"])[0]
    frames = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    held = ControlGenerator("control:first-frame", "ff", "first-frame", base).derive(frames)
    assert held.shape == frames.shape and (held == frames[:1]).all()
    shuffled = ControlGenerator("control:shuffled-prompts", "sp", "shuffled-prompts", base)
    shuffled.bind([{"prompt_en": p} for p in "abc"])
    assert [shuffled.source_prompt(p) for p in "abc"] == ["b", "c", "a"]
    with pytest.raises(GeneratorError, match="at least 2 prompts"):
        shuffled.bind([{"prompt_en": "a"}])
