"""A converted PyramidFlow-miniFLUX checkpoint samples as PyramidFlow (issue 31 §2): the pooled CLIP feature, each
stage's end point, the default negative prompt and prompt suffix, and the whole AR loop against a transcription
of PyramidFlow's `generate` / `generate_one_unit` (pyramid_dit/pyramid_dit_for_video_gen_pipeline.py) and its
scheduler (diffusion_schedulers/scheduling_flow_matching.py)."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from m4v.config import M4VConfig
from m4v.sampling import (
    PYRAMIDFLOW_NEGATIVE_PROMPT,
    PYRAMIDFLOW_PROMPT_SUFFIX,
    PYRAMIDFLOW_SAMPLING,
    GenerationConfig,
    SamplingDefaults,
    TextCondition,
    generate_latents,
)
from m4v.scheduler import PyramidSchedule, block_noise
from m4v.transformer import build_model


# ---- PyramidFlowMatchEulerDiscreteScheduler, transcribed (shift 1, 3 stages, gamma 1/3) ------------------------
class PFScheduler:
    """init_sigmas / init_sigmas_for_each_stage / set_timesteps / step of PyramidFlow's scheduler, line for line."""

    def __init__(self, n=1000, stage_range=(0, 1 / 3, 2 / 3, 1), gamma=1 / 3):
        self.n, self.gamma = n, gamma
        timesteps = torch.from_numpy(np.linspace(1, n, n, dtype=np.float32)[::-1].copy()).to(torch.float32)
        sigmas = timesteps / n
        self.timesteps_all = sigmas * n
        self.ori_start_sigmas, distance, self.timesteps_per_stage = {}, [], {}
        for i in range(3):
            start_i, end_i = max(int(stage_range[i] * n), 0), min(int(stage_range[i + 1] * n), n)
            start, end = sigmas[start_i].item(), sigmas[end_i].item() if end_i < n else 0.0
            self.ori_start_sigmas[i] = start
            if i:
                ori = 1 - start
                start = 1 - (1 / (math.sqrt(1 + 1 / gamma) * (1 - ori) + ori)) * ori
            distance.append(start - end)
        total, ratios = sum(distance), {}
        for i in range(3):
            ratios[i] = (0.0 if i == 0 else sum(distance[:i]) / total, 1.0 if i == 2 else sum(distance[:i + 1]) / total)
        for i in range(3):
            t_max = self.timesteps_all[int(ratios[i][0] * n)]
            t_min = self.timesteps_all[min(int(ratios[i][1] * n), n - 1)]
            timesteps = np.linspace(t_max, t_min, n + 1)
            self.timesteps_per_stage[i] = timesteps[:-1] if isinstance(timesteps, torch.Tensor) else torch.from_numpy(
                timesteps[:-1])
        self.sigmas_per_stage = torch.from_numpy(np.linspace(1, 0, n + 1)[:-1])

    def set_timesteps(self, steps, stage):
        st = self.timesteps_per_stage[stage]
        self.timesteps = torch.from_numpy(np.linspace(st[0].item(), st[-1].item(), steps))
        ratios = torch.from_numpy(np.linspace(self.sigmas_per_stage[0].item(), self.sigmas_per_stage[-1].item(), steps))
        self.sigmas = torch.cat([ratios, torch.zeros(1)])
        self.index = 0

    def step(self, v, x):
        out = x.to(torch.float32) + (self.sigmas[self.index + 1] - self.sigmas[self.index]) * v
        self.index += 1
        return out.to(v.dtype)


@pytest.mark.parametrize("steps", [1, 2, 10, 20])
def test_pyramidflow_stage_ends_equal_pyramidflows_set_timesteps(steps):
    """end="pyramidflow": every timestep and ratio as PyramidFlow's set_timesteps; the default ("range_end", the
    tiny models) stops (t_max - t_min) / 1000 later, 0.26-0.39 timestep units."""
    ours, pf = PyramidSchedule(), PFScheduler()
    for stage in range(3):
        pf.set_timesteps(steps, stage)
        timesteps, ratios = ours.inference_steps(stage, steps, "pyramidflow")
        torch.testing.assert_close(timesteps.double(), pf.timesteps.double(), rtol=0, atol=1e-4)
        torch.testing.assert_close(ratios.double(), pf.sigmas.double(), rtol=0, atol=1e-12)
        range_end, _ = ours.inference_steps(stage, steps)
        t_max, t_min = ours.timestep_ranges[stage]
        if steps > 1:   # (one step evaluates at t_max only)
            assert range_end[-1].item() == pytest.approx(t_min)
            assert timesteps[-1].item() - range_end[-1].item() == pytest.approx((t_max - t_min) / 1000, rel=1e-3)
    with pytest.raises(ValueError, match="stage end"):
        ours.inference_steps(0, 2, "banana")


# ---- generate + generate_one_unit, transcribed ------------------------------------------------------------
def pyramidflow_generate(model, text, negative, units, height, width, steps, video_steps, guidance, video_guidance,
                         generator):
    """PyramidFlow's text-to-video loop with CFG and frame_per_unit 1, calling our transformer (its forward takes
    each frame's pyramid level beside the latents). One deviation, so both loops share their noise: the random
    draws come in our sampler's order from one generator (PyramidFlow draws every unit's initial noise up front and
    its block noise from the global RNG through MultivariateNormal); the block noise is m4v.scheduler.block_noise
    (same covariance, tested in test_scheduler.py)."""
    sched, stages = PFScheduler(), [1, 2, 4]
    prompt_embeds = torch.cat([negative.tokens, text.tokens])
    mask = torch.cat([negative.mask, text.mask])
    pooled = torch.cat([negative.pooled, text.pooled])
    batch, channels = text.tokens.shape[0], model.cfg.latent_channels
    level_of = {height // 4: 0, height // 2: 1, height: 2}

    def dit(frames, timestep):
        return model(frames, [level_of[f.shape[-2]] for f in frames], prompt_embeds, mask, pooled, timestep)

    def get_pyramid_latent(x, stage_num):
        out, (t, h, w) = [x], x.shape[-3:]
        for _ in range(stage_num):
            h, w = h // 2, w // 2
            x = F.interpolate(x.permute(0, 2, 1, 3, 4).flatten(0, 1), size=(h, w), mode="bilinear")
            x = x.view(-1, t, channels, h, w).permute(0, 2, 1, 3, 4)
            out.append(x)
        return list(reversed(out))

    def generate_one_unit(latents, past, num_steps, h, w, first):
        for i_s in range(len(stages)):
            sched.set_timesteps(num_steps[i_s], i_s)
            if i_s > 0:
                h, w = h * 2, w * 2
                latents = F.interpolate(latents, size=(h, w), mode="nearest")
                ori = 1 - sched.ori_start_sigmas[i_s]
                alpha = 1 / (math.sqrt(1 + 1 / sched.gamma) * (1 - ori) + ori)
                beta = alpha * (1 - ori) / math.sqrt(sched.gamma)
                latents = alpha * latents + beta * block_noise(latents.shape, sched.gamma, generator, latents.dtype)
            for t in sched.timesteps:
                model_input = torch.cat([latents] * 2)
                timestep = t.expand(model_input.shape[0]).to(model_input.dtype)
                pred = dit(past[i_s] + [model_input], timestep)
                uncond, cond = pred.chunk(2)
                pred = uncond + (guidance if first else video_guidance) * (cond - uncond)
                latents = sched.step(pred, latents)
        return latents

    generated = []
    for unit in range(units):
        noise = torch.randn(batch, channels, height, width, generator=generator)
        h, w = height, width
        for _ in range(len(stages) - 1):
            h, w = h // 2, w // 2
            noise = F.interpolate(noise, size=(h, w), mode="bilinear") * 2
        if unit == 0:
            past = [[] for _ in stages]
        else:
            past, clean = [], get_pyramid_latent(torch.stack(generated, dim=2), len(stages) - 1)
            for i_s in range(len(stages)):
                stage_input = [torch.cat([clean[i_s][:, :, -1]] * 2)]
                cur_stage, ptx = i_s, 1
                while ptx < unit:
                    cur_stage = max(cur_stage - 1, 0)
                    if cur_stage == 0:
                        break
                    ptx += 1
                    stage_input.append(torch.cat([clean[cur_stage][:, :, -ptx]] * 2))
                if cur_stage == 0 and ptx < unit:
                    older = clean[0][:, :, :-ptx]
                    stage_input += [torch.cat([older[:, :, f]] * 2) for f in reversed(range(older.shape[2]))]
                past.append(list(reversed(stage_input)))
        generated.append(generate_one_unit(noise, past, steps if unit == 0 else video_steps, h, w, unit == 0))
    return torch.stack(generated, dim=2)


def tiny_converted_like_model():
    torch.manual_seed(0)
    model = build_model(M4VConfig.tiny(mixer="m4v", pooled_text_feature="pooler_output"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def random_condition(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    return TextCondition(torch.randn(1, cfg.text_len, cfg.text_dim, generator=g),
                         torch.ones(1, cfg.text_len, dtype=torch.bool),
                         torch.randn(1, cfg.pooled_text_dim, generator=g))


def test_our_sampler_equals_a_transcription_of_pyramidflows_loop():
    """Same model, text, negative prompt features and noise; 5 latent frames (so the history reaches stage 0 and
    older frames), distinct step counts per stage, 7 / 5 guidance: the latents agree to <= 1e-4. With the range-end
    stage stops instead, they do not (the end-point difference is visible)."""
    model = tiny_converted_like_model()
    text, negative = random_condition(model.cfg, 1), random_condition(model.cfg, 2)
    kwargs = dict(latent_frames=5, latent_height=16, latent_width=24, first_frame_steps=(3, 2, 2),
                  video_steps=(2, 1, 2), guidance_scale=7.0, video_guidance_scale=5.0, seed=3)
    with torch.no_grad():
        ours, _ = generate_latents(model, text, GenerationConfig(**kwargs, stage_end="pyramidflow"), null=negative)
        reference = pyramidflow_generate(model, text, negative, 5, 16, 24, (3, 2, 2), (2, 1, 2), 7.0, 5.0,
                                         torch.Generator().manual_seed(3))
        range_end, _ = generate_latents(model, text, GenerationConfig(**kwargs), null=negative)
    assert ours.shape == reference.shape == (1, model.cfg.latent_channels, 5, 16, 24)
    assert (ours - reference).abs().max().item() <= 1e-4
    assert (range_end - reference).abs().max().item() > 1e-4


# ---- pooled CLIP feature ----------------------------------------------------------------------------------
def _tiny_text_dir(tmp_path, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel

    from m4v.text_encoders import CLIP_SUBDIR, build_tiny_text_encoders

    directory = build_tiny_text_encoders(tmp_path / "text", ["a", "red", "circle", "moves"], max_length=8)
    if not with_projection:   # a CLIP-L-style text tower without a projection, as PyramidFlow-miniFLUX ships it
        torch.manual_seed(5)
        config = CLIPTextConfig.from_pretrained(directory / CLIP_SUBDIR)
        CLIPTextModel(config).save_pretrained(directory / CLIP_SUBDIR)
    return directory


@pytest.mark.parametrize("pooled", ["text_embeds", "pooler_output"])
def test_pooled_clip_feature_follows_the_config_field(tmp_path, pooled):
    """text_embeds = CLIPTextModelWithProjection(...).text_embeds (the project's models); pooler_output =
    CLIPTextModel(...).pooler_output (PyramidFlow-miniFLUX's modeling_text_encoder.py), each loaded by transformers
    from the same folder and run on the same tokens; the widths checked at load follow the field."""
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    from m4v.text_encoders import CLIP_SUBDIR, TextEncoders

    directory = _tiny_text_dir(tmp_path, with_projection=pooled == "text_embeds")
    encoders = TextEncoders.from_dir(directory, max_length=8, pooled=pooled)
    cond = encoders.encode(["a red circle moves"], unconditional=False)
    tokenizer = AutoTokenizer.from_pretrained(directory / CLIP_SUBDIR)
    reference_class = CLIPTextModelWithProjection if pooled == "text_embeds" else CLIPTextModel
    reference = reference_class.from_pretrained(directory / CLIP_SUBDIR).eval()
    ids = tokenizer(["a red circle moves"], padding="max_length", truncation=True, return_tensors="pt",
                    max_length=reference.config.max_position_embeddings)
    with torch.no_grad():
        expected = getattr(reference(input_ids=ids.input_ids, attention_mask=ids.attention_mask), pooled)
    torch.testing.assert_close(cond.pooled, expected)
    config = reference.config
    assert encoders.pooled_width == (config.projection_dim if pooled == "text_embeds" else config.hidden_size)
    assert cond.pooled.shape == (1, encoders.pooled_width)
    with pytest.raises(ValueError, match="pooled"):
        TextEncoders.from_dir(directory, max_length=8, pooled="banana")


def test_a_converted_checkpoint_reads_pooler_output_and_samples_with_pyramidflows_defaults(tmp_path):
    """config_from_pyramidflow sets pooled_text_feature; save_converted writes PyramidFlow's sampling defaults
    (stage ends, negative prompt, prompt suffix) beside the weights, and TextToVideo reads them back."""
    from m4v.convert import config_from_pyramidflow, save_converted

    state = {"x_embedder.weight": torch.zeros(64, 64), "transformer_blocks.0.attn.norm_q.weight": torch.zeros(16),
             "context_embedder.weight": torch.zeros(64, 32),
             "time_text_embed.text_embedder.linear_1.weight": torch.zeros(64, 48),
             "single_transformer_blocks.0.attn.to_q.weight": torch.zeros(64, 64)}
    cfg = config_from_pyramidflow(state, {"axes_dims_rope": [4, 6, 6]})
    assert cfg.pooled_text_feature == "pooler_output" and cfg.pooled_text_dim == 48
    directory = save_converted(tiny_converted_like_model(), tmp_path / "converted")
    defaults = SamplingDefaults.read(directory)
    assert defaults == PYRAMIDFLOW_SAMPLING
    assert (defaults.stage_end, defaults.negative_prompt, defaults.prompt_suffix) == (
        "pyramidflow", PYRAMIDFLOW_NEGATIVE_PROMPT, ", hyper quality, Ultra HD, 8K")
    assert PYRAMIDFLOW_PROMPT_SUFFIX.startswith(", hyper quality")
    assert SamplingDefaults.read(tmp_path) == SamplingDefaults()           # no sampling.json: the tiny models' rule


@pytest.mark.parametrize("content", ['[]', '{"stage_end": "late"}', '{"negative_prompt": 5}', '{"steps": 3}', "{"])
def test_a_malformed_sampling_json_is_one_line_naming_it(tmp_path, content):
    (tmp_path / "sampling.json").write_text(content)
    with pytest.raises(ValueError) as info:
        SamplingDefaults.read(tmp_path)
    assert str(tmp_path / "sampling.json") in str(info.value) and "\n" not in str(info.value)


def test_text_to_video_applies_the_checkpoints_sampling_defaults(tmp_path, monkeypatch):
    """A shipped checkpoint copied with a sampling.json: prompts get the suffix, CFG's null branch reads the
    negative prompt, the stages stop at PyramidFlow's end points; the generator's cache key names the file."""
    import shutil

    from benchmarks.generators.shipped import checkpoint_generator
    from m4v import text_to_video
    from m4v.checkpoint import weights_path

    directory = tmp_path / "dit-tiny-pf"
    shutil.copytree(weights_path("dit-tiny"), directory)
    plain_key = checkpoint_generator(str(directory), "vae-tiny", "text-tiny").fingerprint()
    SamplingDefaults("pyramidflow", "blurry", ", sharp").write(directory)
    assert json.loads((directory / "sampling.json").read_text())["prompt_suffix"] == ", sharp"
    key = checkpoint_generator(str(directory), "vae-tiny", "text-tiny").fingerprint()
    assert key["sampling_defaults"] and {k: v for k, v in key.items() if k != "sampling_defaults"} == plain_key
    pipe = text_to_video.TextToVideo.from_pretrained(str(directory))
    seen = {}

    def spy(model, text, config, null=None, **kw):
        seen.update(config=config, null=null)
        return torch.zeros(len(text.tokens), model.cfg.latent_channels, config.latent_frames, config.latent_height,
                           config.latent_width), None
    encoded = []
    real_encode = pipe.text.encode
    monkeypatch.setattr(pipe.text, "encode", lambda prompts, unconditional=True: encoded.append(list(prompts))
                        or real_encode(prompts, unconditional))
    monkeypatch.setattr(text_to_video, "generate_latents", spy)
    pipe(["a red circle"], frames=1, height=64, width=64)
    assert encoded == [["a red circle, sharp"], ["blurry"]]
    assert seen["config"].stage_end == "pyramidflow" and seen["null"] is not None
