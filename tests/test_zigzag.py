"""Zigzag paths: bijections on rectangular grids that only step between neighbouring cells."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from m4v.zigzag import ZIGZAG_PATHS, inverse_permutation, path_for_layer, zigzag_path


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), index=st.integers(0, 7))
def test_every_path_is_a_continuous_bijection(h, w, index):
    perm = zigzag_path(h, w, index)
    assert sorted(perm.tolist()) == list(range(h * w))
    rows, cols = perm // w, perm % w
    steps = (rows[1:] - rows[:-1]).abs() + (cols[1:] - cols[:-1]).abs()
    assert bool((steps == 1).all())
    inv = inverse_permutation(perm)
    assert torch.equal(perm[inv], torch.arange(h * w)) and torch.equal(inv[perm], torch.arange(h * w))


def test_hand_written_paths_on_2x3():
    # grid 0 1 2 / 3 4 5
    assert zigzag_path(2, 3, 0).tolist() == [0, 1, 2, 5, 4, 3]   # top-left, row snake
    assert zigzag_path(2, 3, 1).tolist() == [0, 3, 4, 1, 2, 5]   # top-left, column snake
    assert zigzag_path(2, 3, 2).tolist() == [2, 1, 0, 3, 4, 5]   # top-right, row snake
    assert zigzag_path(2, 3, 7).tolist() == [5, 2, 1, 4, 3, 0]   # bottom-right, column snake


@pytest.mark.parametrize("h,w", [(2, 2), (3, 5), (12, 20)])
def test_eight_distinct_paths(h, w):
    assert len({tuple(zigzag_path(h, w, i).tolist()) for i in range(len(ZIGZAG_PATHS))}) == 8


def test_layers_cycle_through_paths():
    assert [path_for_layer(i) for i in range(10)] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    assert path_for_layer(5, n_paths=2) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="index"):
        zigzag_path(2, 2, 8)
    with pytest.raises(ValueError, match="grid"):
        zigzag_path(0, 2, 0)
    with pytest.raises(ValueError, match="n_paths"):
        path_for_layer(1, n_paths=9)
