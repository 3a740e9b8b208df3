"""Text encoders: built, saved and loaded back with transformers from a local directory."""

import pytest
import torch

from m4v.text import TextEncoders, build_tiny_text_encoders
from m4v.world import BACKGROUNDS, COLORS, SHAPES

WORDS = ["a", "an", "moves", "on", "and", "stays", "still", "background", "to", "the", "of", "left", "right",
         "above", "below", "up", "down", ",", "style", "flat", "shadow", *COLORS, *SHAPES, *BACKGROUNDS]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    directory = build_tiny_text_encoders(tmp_path_factory.mktemp("text"), WORDS, max_length=12)
    return TextEncoders.from_dir(directory, max_length=12), directory


def test_encode_shapes_and_right_padding(encoders):
    enc, _ = encoders
    cond = enc.encode(["a red square moves left on a grey background", "a blue circle"])
    assert cond.tokens.shape == (2, 12, 32) and cond.pooled.shape == (2, 16)
    # word-level: one token per word plus </s>, then right padding
    assert cond.mask.sum(1).tolist() == [9 + 1, 3 + 1]  # "a red square moves left on a grey background"
    assert torch.equal(cond.mask[1], cond.mask[1].sort(descending=True).values)  # real tokens first


def test_reload_gives_identical_features(encoders):
    enc, directory = encoders
    again = TextEncoders.from_dir(directory, max_length=12)
    a, b = enc.encode(["a yellow star to the left of a red circle"]), again.encode(
        ["a yellow star to the left of a red circle"])
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)


def test_different_prompts_differ(encoders):
    enc, _ = encoders
    cond = enc.encode(["a red square", "a green star"])
    assert not torch.allclose(cond.pooled[0], cond.pooled[1])


def test_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="t5/config.json"):
        TextEncoders.from_dir(tmp_path)


def test_encode_attaches_the_empty_prompt_as_the_unconditional_input(encoders):
    """CFG's null as PyramidFlow trains it (caption dropout to ''): the encoders' features of the empty prompt."""
    enc, _ = encoders
    cond = enc.encode(["a red square", "a blue circle"])
    alone = enc.encode([""], unconditional=False)
    assert cond.unconditional.tokens.shape == cond.tokens.shape
    for i in range(2):
        torch.testing.assert_close(cond.unconditional.tokens[i], alone.tokens[0])
        torch.testing.assert_close(cond.unconditional.pooled[i], alone.pooled[0])
        assert torch.equal(cond.unconditional.mask[i], alone.mask[0])
    assert alone.mask[0].sum() == 1                                         # only </s>
    assert enc.encode(["a red square"], unconditional=False).unconditional is None
