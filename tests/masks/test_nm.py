"""N:M masks: exact counts, top-N selection, layout, validity reports, skipped layers."""

from __future__ import annotations

import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks.nm import from_groups, is_valid_nm, nm_mask, nm_maskset, retained_score, to_groups

PATTERNS = [(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (2, 8)]


@st.composite
def weights(draw):
    n, m = draw(st.sampled_from(PATTERNS))
    out = draw(st.integers(1, 5))
    groups = draw(st.integers(1, 4))
    kernel = draw(st.sampled_from([(), (1,), (3,), (2, 3), (1, 1, 2)]))
    seed = draw(st.integers(0, 2**16))
    w = torch.randn(out, groups * m, *kernel, generator=torch.Generator().manual_seed(seed))
    return w, n, m


@settings(max_examples=60, deadline=None)
@given(weights())
def test_exactly_n_of_every_m_kept(case):
    w, n, m = case
    mask = nm_mask(w.abs(), n, m)
    assert mask.shape == w.shape and mask.dtype == torch.bool
    assert (to_groups(mask, m).sum(-1) == n).all()
    assert is_valid_nm(mask, n, m, exact=True)
    assert int(mask.sum()) == w.numel() * n // m


@settings(max_examples=60, deadline=None)
@given(weights())
def test_kept_entries_are_the_top_n_of_their_group(case):
    w, n, m = case
    mask = to_groups(nm_mask(w.abs(), n, m), m)
    scores = to_groups(w.abs(), m)
    kept_min = torch.where(mask, scores, torch.inf).amin(-1)
    pruned_max = torch.where(~mask, scores, -torch.inf).amax(-1)
    assert (kept_min >= pruned_max).all()
    assert retained_score(w.abs(), n, m) == pytest.approx(float((w.abs() * from_groups(mask, w.shape)).sum()), rel=1e-5)


def test_conv_groups_run_along_input_channels_at_each_kernel_position():
    w = torch.zeros(1, 4, 2, 2)
    w[0, :, 0, 1] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # one group: position (0, 1), channels 0..3
    mask = nm_mask(w, 2, 4)
    assert mask[0, :, 0, 1].tolist() == [True, True, False, False]
    assert torch.equal(from_groups(to_groups(w, 4), w.shape), w)


def test_report_names_the_failing_group():
    mask = nm_mask(torch.randn(3, 8, 3, 3).abs(), 2, 4)
    mask[2, 4:8, 1, 0] = True
    check = is_valid_nm(mask, 2, 4)
    assert not check and check.bad_groups == 1
    assert check.failures == [((2, 4, 1, 0), 4)]
    assert "group at index (2, 4, 1, 0) keeps 4" in check.message


def test_fewer_than_n_is_valid_unless_exact():
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, 0] = True
    assert is_valid_nm(mask, 2, 4)
    assert not is_valid_nm(mask, 2, 4, exact=True)
    assert is_valid_nm(torch.randn(2, 8) * mask, 2, 4)  # weights: nonzero = kept


def test_bad_shapes_and_patterns():
    assert "input dimension 6 of shape (2, 6) is not a multiple of M=4" in is_valid_nm(torch.ones(2, 6), 2, 4).message
    with pytest.raises(ConfigError, match="0 < N < M"):
        nm_mask(torch.ones(2, 8), 4, 4)
    with pytest.raises(ConfigError, match="multiple of M=4"):
        nm_mask(torch.ones(2, 6), 2, 4)


def test_maskset_skips_layers_whose_input_dim_is_not_a_multiple_of_m(caplog):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8, 6), nn.Linear(6, 2))
    with caplog.at_level(logging.WARNING, logger="prunekit.masks.nm"):
        masks = nm_maskset(model, 2, 4)
    assert sorted(masks) == ["1.weight", "3.weight"]
    assert "0.weight: input dimension 3 is not a multiple of M=4" in caplog.text
    assert "4.weight: input dimension 6" in caplog.text
    assert all(is_valid_nm(m, 2, 4, exact=True) for m in masks.values())


def test_maskset_uses_given_scores():
    model = nn.Linear(4, 1, bias=False)
    masks = nm_maskset(model, 1, 4, scores={"weight": torch.tensor([[0.0, 0.0, 9.0, 0.0]])})
    assert masks["weight"].tolist() == [[False, False, True, False]]
    with pytest.raises(ConfigError, match="no score tensor"):
        nm_maskset(nn.Sequential(nn.Linear(4, 4)), 1, 4, scores={})
