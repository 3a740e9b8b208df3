"""Causal depthwise conv1d helper."""

import pytest
import torch

from m4v.ops import causal_conv1d


def test_matches_hand_loop():
    x, w, b = torch.randn(2, 3, 9), torch.randn(3, 4), torch.randn(3)
    out = causal_conv1d(x, w, b)
    expected = torch.zeros_like(x)
    for t in range(9):
        for k in range(4):
            src = t - 3 + k
            if src >= 0:
                expected[:, :, t] += w[:, k] * x[:, :, src]
    torch.testing.assert_close(out, expected + b[:, None])
    torch.testing.assert_close(causal_conv1d(x, w, b, activation="silu"), torch.nn.functional.silu(out))


def test_is_causal():
    x, w = torch.randn(1, 2, 12), torch.randn(2, 4)
    changed = x.clone()
    changed[..., 7:] += 1.0
    torch.testing.assert_close(causal_conv1d(x, w)[..., :7], causal_conv1d(changed, w)[..., :7])
    assert not torch.allclose(causal_conv1d(x, w)[..., 7:], causal_conv1d(changed, w)[..., 7:])


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(torch.randn(1, 2, 3), torch.randn(2, 4), activation="relu")
    with pytest.raises(ValueError, match="weight"):
        causal_conv1d(torch.randn(1, 2, 3), torch.randn(3, 4))
