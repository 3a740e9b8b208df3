"""MM-token re-composition: layout, round trip, pads, registers, gradients, token count."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from m4v.pyramid import stage_frames
from m4v.recomposition import invert, recompose, sequence_length
from m4v.zigzag import zigzag_path


def make(batch, n_text, lengths, frame_sizes, D=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(batch, n_text, D, generator=g)
    mask = torch.arange(n_text)[None] < torch.tensor(lengths)[:, None]      # right padding
    video = torch.randn(batch, sum(h * w for h, w in frame_sizes), D, generator=g)
    return text, mask, video


frames_strategy = st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4)


@settings(max_examples=50, deadline=None)
@given(frames=frames_strategy, n_text=st.integers(1, 6), data=st.data(), text_rc=st.booleans(),
       use_registers=st.booleans(), path=st.sampled_from([None, 0, 3, 7]))
def test_round_trip(frames, n_text, data, text_rc, use_registers, path):
    batch = 3
    lengths = data.draw(st.lists(st.integers(0, n_text), min_size=batch, max_size=batch))
    text, mask, video = make(batch, n_text, lengths, frames)
    levels = [i % 3 for i in range(len(frames))]
    registers = torch.randn(3, 3) if use_registers else None
    seq, valid, plan = recompose(text, mask, video, frames, levels, registers, path, text_rc)
    assert seq.shape[1] == sequence_length(n_text, frames, use_registers, text_rc)
    assert torch.equal(seq[~valid], torch.zeros_like(seq[~valid]))          # pads are zero vectors
    text_out, video_out = invert(seq, plan)
    assert torch.equal(video_out, video)
    expected_text = text * mask[..., None] * (2 if text_rc else 1)           # two copies summed
    torch.testing.assert_close(text_out, expected_text)


def test_layout_left_copy_registers_zigzag_right_copy():
    frames, levels = [(2, 2), (2, 3)], [0, 2]
    text, mask, video = make(2, 4, [2, 4], frames)
    registers = torch.arange(9.0).reshape(3, 3)
    seq, valid, _ = recompose(text, mask, video, frames, levels, registers, 1, True)
    # sample 0: Z_l = [0, 0, t0, t1]; real text ends right before the first register
    assert torch.equal(seq[0, :2], torch.zeros(2, 3)) and torch.equal(seq[0, 2:4], text[0, :2])
    assert valid[0, :4].tolist() == [False, False, True, True]
    assert torch.equal(seq[1, :4], text[1])
    assert torch.equal(seq[:, 4], registers[0].expand(2, 3))                 # r of frame 0 (level 0)
    assert torch.equal(seq[:, 5:9], video[:, zigzag_path(2, 2, 1)])
    assert torch.equal(seq[:, 9], registers[2].expand(2, 3))                 # r of frame 1 (level 2)
    assert torch.equal(seq[:, 10:16], video[:, 4 + zigzag_path(2, 3, 1)])
    assert torch.equal(seq[0, 16:18], text[0, :2]) and torch.equal(seq[0, 18:], torch.zeros(2, 3))
    assert valid[0, 16:].tolist() == [True, True, False, False]


def test_gradients_flow_through_both_text_copies():
    frames = [(2, 2)]
    text, mask, video = make(1, 3, [2], frames)
    text.requires_grad_()
    video.requires_grad_()
    registers = torch.randn(3, 3, requires_grad=True)
    seq, _, plan = recompose(text, mask, video, frames, [2], registers, 4, True)
    weights = torch.randn_like(seq)
    text_out, video_out = invert(seq * weights, plan)
    (text_out.sum() + video_out.sum()).backward()
    # d/d text_k = w at its Z_l position + w at its Z_r position, real tokens only.
    expected = torch.zeros_like(text)
    expected[0, :2] = weights[0, 1:3] + weights[0, -3:-1]
    torch.testing.assert_close(text.grad, expected)
    assert torch.equal(registers.grad, torch.zeros_like(registers))          # registers are dropped
    assert video.grad.abs().sum() > 0


def test_meta_device_and_paper_token_count():
    sizes, levels = stage_frames(768, 1280, 30, 2)
    tokens = [(h // 2, w // 2) for h, w in sizes]
    assert sequence_length(128, tokens, True, True) == 15_647
    n_video = sum(h * w for h, w in tokens)
    with torch.device("meta"):
        text, video = torch.empty(1, 128, 8), torch.empty(1, n_video, 8)
        mask = torch.ones(1, 128, dtype=torch.bool)
        seq, valid, plan = recompose(text, mask, video, tokens, levels, torch.empty(3, 8), 5, True)
    assert seq.shape == (1, 15_647, 8) and seq.device.type == "meta"
    text_out, video_out = invert(seq, plan)
    assert text_out.shape == (1, 128, 8) and video_out.shape == (1, 15_360, 8)
