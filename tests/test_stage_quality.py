"""Stage diagnostic: a denoiser that knows the true endpoint scores exactly the VAE's ceiling; CLI tables."""

from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.cli import main
from benchmarks.diagnostics.stage_quality import SINGLE_OBJECT_KINDS, single_object_entries, stage_scores, true_latents
from m4v.recipes import weights_path
from m4v.text_encoders import TextEncoders
from m4v.text_to_video import TextToVideo
from m4v.vae import CausalVideoVAE
from m4v.world import Scene, render
from tests.test_pipeline import PerfectVelocity


def shipped_encoders_and_latents(entries, n_frames=1):
    """(shipped VAE, shipped text encoders, scenes, true normalised latents (B, C, T, h, w)) of the entries."""
    vae = CausalVideoVAE.from_pretrained(weights_path("vae-tiny"))
    with torch.no_grad():
        scenes, clean = true_latents(vae, entries, n_frames)
    return vae, TextEncoders.from_dir(weights_path("text-tiny"), max_length=16), scenes, clean


def test_single_object_entries_interleave_kinds_with_one_object():
    entries = single_object_entries(7)
    assert [e["world_kind"] for e in entries[:5]] == list(SINGLE_OBJECT_KINDS)
    assert len(entries) == 7
    assert all(len(e["auxiliary_info"]["world"]["objects"]) == 1 for e in entries)


def test_perfect_last_stage_reaches_the_clean_ceiling():
    entries = single_object_entries(6)
    vae, text, _, clean = shipped_encoders_and_latents(entries)
    rows = stage_scores(TextToVideo(PerfectVelocity(clean[:, :, 0]), vae, text), entries, starts=(2,))
    assert [r["start"] for r in rows] == ["stage 2", "clean"]
    perfect, ceiling = ({k: v for k, v in r.items() if k != "start"} for r in rows)
    assert perfect == ceiling
    assert ceiling["colour"] > 0.5        # the shipped VAE keeps colours: the ceiling is not trivially zero


def test_stage_quality_cli_writes_its_tables(tmp_path, capsys):
    assert main(["stage-quality", "--models", "dit-tiny", "--prompts", "3", "--steps", "1",
                 "--out", str(tmp_path)]) == 0
    assert {"stage_quality.csv", "stage_quality.json", "stage_quality.md"} <= {p.name for p in tmp_path.iterdir()}
    assert "stage 2" in capsys.readouterr().out
    assert main(["stage-quality", "--models", "no-such-model", "--prompts", "3"]) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_clutter_is_found_but_not_counted():
    """An extra object painted into every frame keeps 'prompted object found' at 1 but fails the count."""
    from benchmarks.diagnostics.stage_quality import score_frames
    from evaluators import Video, get_evaluator
    from m4v.world.scene import COLORS, shape_mask

    entry = single_object_entries(1)[0]                                       # a colour prompt: one object
    scene = Scene.from_dict(entry["auxiliary_info"]["world"])
    video = render(scene)

    def score(name, frames):
        return get_evaluator(name).evaluate_video(Video(frames, 8, entry["prompt_en"], "v", entry)).score

    assert score("world_count", video) == 1.0
    o = scene.objects[0]
    other = next(c for c in COLORS if c != o.color)
    corner = max([(8, 8), (56, 8), (8, 56), (56, 56)], key=lambda c: (c[0] - o.x) ** 2 + (c[1] - o.y) ** 2)
    assert ((corner[0] - o.x) ** 2 + (corner[1] - o.y) ** 2) ** 0.5 > o.radius + 6 + 2  # the square lies apart
    cluttered = video.copy()
    cluttered[:, shape_mask("square", *corner, 6, 64, 64)] = COLORS[other]  # the farthest corner, no overlap
    assert score("world_colour_shape", cluttered) == 1.0 and score("world_count", cluttered) == 0.0
    assert score_frames(cluttered[:1], [entry])["one_object"] == 0.0
    assert score_frames(video[:1], [entry]) == {"colour_shape": 1.0, "shape": 1.0, "colour": 1.0, "one_object": 1.0}


def test_shape_confusion_of_a_text_blind_model_has_identical_rows():
    """PerfectVelocity ignores the text: every prompted shape reads as the true shapes do."""
    from benchmarks.diagnostics.stage_quality import shape_word_confusion
    from m4v.world import SHAPES

    entries = single_object_entries(8)
    vae, text, scenes, clean = shipped_encoders_and_latents(entries)
    clean = clean[:, :, 0]

    class Restarting(PerfectVelocity):          # a fresh start point per prompted shape
        def forward(self, frames, levels, *condition):
            if self.calls % 8 == 0:              # 8 Euler steps per run of the last stage
                self.start = None
            self.calls += 1
            return super().forward(frames, levels, *condition)

    model = Restarting(clean)
    model.calls = 0
    table = shape_word_confusion(TextToVideo(model, vae, text), entries, stage=2)
    from benchmarks.diagnostics.stage_quality import decoded
    from m4v.world import read_frame

    with torch.no_grad():
        frames = decoded(vae, clean[:, :, None])[:, 0]
    largest = [max(read_frame(f).objects, key=lambda d: d.area) for f in frames]
    expected = [[d.shape for d in largest].count(s) for s in SHAPES] + [0]
    assert all(table.loc[s, [*SHAPES, "none"]].tolist() == expected for s in SHAPES)
    assert np.allclose(table["mean_fill"], np.mean([d.fill for d in largest]))
    assert np.allclose(table["mean_solidity"], np.mean([d.solidity for d in largest]))


class PerfectVideoVelocity(torch.nn.Module):
    """Lands every (latent frame, stage) run on the true latent of that frame at that stage's size."""

    def __init__(self, clean_video):
        super().__init__()
        self.clean, self.key, self.start = clean_video, None, None
        self.cfg = SimpleNamespace(latent_channels=clean_video.shape[1])   # what generate_latents reads

    def forward(self, frames, levels, *condition):
        from m4v.scheduler import pyramid_latents

        x, batch, key = frames[-1], len(self.clean), (len(frames), levels[-1])
        if key != self.key:                         # a new stage run: remember where it starts
            self.key, self.start = key, x[:batch].clone()
        target = pyramid_latents(self.clean[:, :, len(frames) - 1], 3)[levels[-1]]
        return (self.start - target).repeat(len(x) // batch, 1, 1, 1)


def test_motion_after_a_perfect_history_matches_the_true_videos():
    from benchmarks.diagnostics.stage_quality import SUITE_SEED, motion_from_true_first_frame
    from m4v.world.captions import prompt_suite

    entries = [e for e in prompt_suite(3, seed=SUITE_SEED) if e["world_kind"] in ("dynamic", "static")]
    vae, text, _, clean = shipped_encoders_and_latents(entries, n_frames=17)
    result = motion_from_true_first_frame(TextToVideo(PerfectVideoVelocity(clean), vae, text), per_kind=3)
    assert result["generated"] == result["vae_ceiling"]
    assert result["vae_ceiling"]["motion_right_dynamic"] == 1.0   # the shipped VAE keeps every direction


def test_swapped_prompts_change_one_word_of_the_first_object():
    from benchmarks.diagnostics.stage_quality import swapped_prompts

    scene = SimpleNamespace(objects=[SimpleNamespace(shape="star", color="red")])
    swapped = swapped_prompts([{"prompt_en": "a red star moves left on a red background"}], [scene])
    # next in the world's lists, first whole word only: star -> square (wraps), red -> the colour after red
    from m4v.world import COLORS

    colours = list(COLORS)
    after_red = colours[(colours.index("red") + 1) % len(colours)]
    assert swapped == {"shape": ["a red square moves left on a red background"],
                       "colour": [f"a {after_red} star moves left on a red background"]}


def test_word_sensitivity_is_zero_for_a_text_blind_model_and_not_for_a_text_reading_one():
    from benchmarks.diagnostics.stage_quality import word_sensitivity

    entries = single_object_entries(6)
    vae, text, _, _ = shipped_encoders_and_latents(entries)

    class Reader(torch.nn.Module):
        """Velocity = 0.5 x, plus (if reading) each sample's mean pooled text feature."""

        def __init__(self, reads_text):
            super().__init__()
            self.reads_text = reads_text

        def forward(self, frames, levels, tokens, mask, pooled, timestep):
            x = frames[-1]
            return 0.5 * x + (pooled.mean(-1).view(-1, 1, 1, 1) if self.reads_text else 0)

    blind = word_sensitivity(TextToVideo(Reader(False), vae, text), entries, stages=(1, 2), ratios=(0.9, 0.3))
    assert [(r["stage"], r["ratio"]) for r in blind] == [(1, 0.9), (1, 0.3), (2, 0.9), (2, 0.3)]
    assert all(r["loss"] > 0 and r["shape_swap_rise"] == 0 and r["colour_swap_rise"] == 0 for r in blind)
    reading = word_sensitivity(TextToVideo(Reader(True), vae, text), entries, stages=(2,), ratios=(0.9,))
    assert reading[0]["shape_swap_rise"] != 0 and reading[0]["colour_swap_rise"] != 0
