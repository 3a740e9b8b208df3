"""Autoregressive pyramidal generation of video latents (PyramidFlow's generate, spec §1.1).

One latent frame at a time; each frame runs the three pyramid stages coarse to fine with a renoise between
stages; earlier frames condition it as compressed history (m4v/pyramid.history_levels); classifier-free
guidance with separate scales for the first frame and the later ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from m4v.pyramid import history_levels
from m4v.scheduler import STAGE_ENDS, PyramidSchedule, pyramid_latents, stage_noise

SAMPLING_NAME = "sampling.json"
# PyramidFlow's `generate` defaults (pyramid_dit/pyramid_dit_for_video_gen_pipeline.py).
PYRAMIDFLOW_NEGATIVE_PROMPT = ("cartoon style, worst quality, low quality, blurry, absolute black, absolute white, "
                               "low res, extra limbs, extra digits, misplaced objects, mutated anatomy, monochrome, "
                               "horror")
PYRAMIDFLOW_PROMPT_SUFFIX = ", hyper quality, Ultra HD, 8K"


@dataclass(frozen=True)
class SamplingDefaults:
    """A checkpoint's own sampling defaults (DIR/sampling.json, optional; absent = these values)."""

    stage_end: str = "range_end"         # PyramidSchedule.inference_steps
    negative_prompt: str | None = None   # CFG's unconditional text; None: the model's null condition
    prompt_suffix: str = ""              # appended to every prompt before encoding

    def __post_init__(self):
        if self.stage_end not in STAGE_ENDS:
            raise ValueError(f"stage_end must be one of {STAGE_ENDS}, got {self.stage_end!r}")
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ValueError(f"negative_prompt must be text or null, got {self.negative_prompt!r}")
        if not isinstance(self.prompt_suffix, str):
            raise ValueError(f"prompt_suffix must be text, got {self.prompt_suffix!r}")

    @classmethod
    def read(cls, directory) -> SamplingDefaults:
        """DIR/sampling.json, or the defaults when there is none; a malformed file is one line naming it."""
        path = Path(directory) / SAMPLING_NAME
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            unknown = set(data) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            return cls(**data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def write(self, directory) -> Path:
        path = Path(directory) / SAMPLING_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path


# What a converted PyramidFlow-miniFLUX checkpoint samples with (m4v/convert.save_converted).
PYRAMIDFLOW_SAMPLING = SamplingDefaults("pyramidflow", PYRAMIDFLOW_NEGATIVE_PROMPT, PYRAMIDFLOW_PROMPT_SUFFIX)


@dataclass
class TextCondition:
    """T5 sequence features (B, Lt, Dt), their mask (B, Lt) and pooled CLIP features (B, Dp); `unconditional`:
    the same encoders' features of the empty prompt, batch-sized (TextEncoders.encode attaches them)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    unconditional: TextCondition | None = None

    @classmethod
    def null_like(cls, other: TextCondition) -> TextCondition:
        """The unconditional branch of CFG: zero features, only the first token valid."""
        mask = torch.zeros_like(other.mask)
        mask[:, 0] = True
        return cls(torch.zeros_like(other.tokens), mask, torch.zeros_like(other.pooled))

    def to(self, device) -> TextCondition:
        """The same condition on another device."""
        unconditional = None if self.unconditional is None else self.unconditional.to(device)
        return TextCondition(self.tokens.to(device), self.mask.to(device), self.pooled.to(device), unconditional)


def null_condition(model, text: TextCondition) -> TextCondition:
    """CFG's unconditional input as the model was trained with it (M4VConfig.null_condition): zero features
    ("zeros", the shipped tiny models) or the encoders' empty prompt ("empty_prompt", PyramidFlow)."""
    if getattr(getattr(model, "cfg", None), "null_condition", "zeros") == "zeros":  # stand-ins without it: legacy
        return TextCondition.null_like(text)
    if text.unconditional is None:
        raise ValueError("this model's null condition is the empty prompt's features: encode the prompts with "
                         "TextEncoders.encode (which attaches them) or pass null= explicitly")
    return text.unconditional


@dataclass
class GenerationConfig:
    latent_frames: int = 4
    latent_height: int = 16                  # full-resolution latent size; divisible by 4 x patch size
    latent_width: int = 24
    first_frame_steps: tuple = (20, 20, 20)  # PyramidFlow's 768p defaults
    video_steps: tuple = (10, 10, 10)
    guidance_scale: float = 7.0
    video_guidance_scale: float = 5.0
    seed: int = 0
    stage_end: str = "range_end"             # each stage's last timestep (PyramidSchedule.inference_steps)


@dataclass
class GenerationStats:
    forwards: int = 0                         # transformer calls (a CFG pair counts as one batched call)
    sequence_sizes: list = field(default_factory=list)  # per call: [(h, w)] of every frame in the sequence
    sequence_levels: list = field(default_factory=list)  # per call: pyramid level of every frame
    batch: int = 0                            # batch of each call (2x the prompts with CFG)


@torch.no_grad()
def generate_latents(model, text: TextCondition, config: GenerationConfig, schedule: PyramidSchedule | None = None,
                     progress: bool = False, given: torch.Tensor | None = None,
                    null: TextCondition | None = None) -> tuple[torch.Tensor, GenerationStats]:
    """-> latents (B, C, T, H, W) and call statistics; `progress` shows a bar over latent frames. `given`
    (B, C, k, H, W): the first k latent frames, taken as they are (history for the rest, no sampling). `null`:
    CFG's unconditional input (a negative prompt's features); default null_condition(model, text)."""
    from tqdm import tqdm

    schedule = schedule or PyramidSchedule()
    n_stages = schedule.n_stages
    generator = torch.Generator().manual_seed(config.seed)
    batch = text.tokens.shape[0]
    channels = model.cfg.latent_channels
    null = null_condition(model, text) if null is None else null
    stats = GenerationStats()
    # per finished frame: its latent at every stage, lowest first
    generated = [pyramid_latents(given[:, :, t], n_stages) for t in range(0 if given is None else given.shape[2])]

    for unit in tqdm(range(len(generated), config.latent_frames), desc="latent frames", disable=not progress,
                     leave=False):
        steps = config.first_frame_steps if unit == 0 else config.video_steps
        guidance = config.guidance_scale if unit == 0 else config.video_guidance_scale
        x = stage_noise(torch.randn(batch, channels, config.latent_height, config.latent_width, generator=generator),
                        n_stages - 1)
        x = denoise_frame(model, x, generated, text, null, schedule, steps, guidance, generator, stats=stats,
                          stage_end=config.stage_end)
        generated.append(pyramid_latents(x, n_stages))
    return torch.stack([levels[-1] for levels in generated], dim=2), stats


def denoise_frame(model, x: torch.Tensor, generated: list, text: TextCondition, null: TextCondition,
                  schedule: PyramidSchedule, steps, guidance: float, generator: torch.Generator,
                  first_stage: int = 0, stats: GenerationStats | None = None,
                  stage_end: str = "range_end") -> torch.Tensor:
    """Run the pyramid stages first_stage.. of the next latent frame from x, its start point at first_stage
    (B, C, h, w); `generated` holds every finished frame's pyramid (its history). -> the frame at full size."""
    for stage in range(first_stage, schedule.n_stages):
        if stage > first_stage:
            x = schedule.renoise(x, stage, generator)
        levels = history_levels(len(generated), stage)
        history = [generated[f][lv] for f, lv in enumerate(levels)]
        timesteps, ratios = schedule.inference_steps(stage, steps[stage], stage_end)
        for i, t in enumerate(timesteps):
            velocity = _guided_velocity(model, history + [x], levels + [stage], text, null, float(t), guidance)
            if stats is not None:
                stats.forwards += 1
                stats.sequence_sizes.append([tuple(f.shape[-2:]) for f in history + [x]])
                stats.sequence_levels.append(levels + [stage])
                stats.batch = len(text.tokens) * (1 if guidance == 1.0 else 2)
            x = schedule.euler_step(x, velocity, ratios[i].item(), ratios[i + 1].item())
    return x


def _guided_velocity(model, frames, levels, text, null, timestep, guidance):
    """CFG: one batched call on [unconditional ; conditional], v = v_u + g (v_c - v_u)."""
    if guidance == 1.0:
        return model(frames, levels, text.tokens, text.mask, text.pooled, torch.full((len(text.tokens),), timestep))
    both = [torch.cat([f, f]) for f in frames]
    out = model(both, levels, torch.cat([null.tokens, text.tokens]), torch.cat([null.mask, text.mask]),
                torch.cat([null.pooled, text.pooled]), torch.full((2 * len(text.tokens),), timestep))
    uncond, cond = out.chunk(2)
    return uncond + guidance * (cond - uncond)
