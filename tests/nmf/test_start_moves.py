"""Which moves the ``"auto"`` start makes before a full-resolution fit (issue 14).

A particle never seen pure is a mixture with the matrix around it; the start used to move it half
way to its composition bound after the refinement, and the regularised fit then carried it
further, off the line of equal likelihood (the reference sample's Ca-perovskite at 7°). With the
fit's final move to the bound on, the start now leaves that move to the end, and the move of a
cluster away from *other* phases (a film between two grains) is kept for clusters mixed mainly
with them. The module switches restore the start of before.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import _init


def test_a_film_between_two_grains_is_moved_and_an_overlapping_particle_is_not():
    # columns: the mixture of the other phases around each phase (surroundings); phase 0 is the
    # anchor. Phase 1: a particle seen through the matrix, overlapping particle 2 (the
    # reference sample, seed 0: 0.87 / 0.13); phase 2: a film between the anchor and grain 1
    # (the validation matrix's grain boundary: 0.24 / 0.76)
    around = np.array([[0.0, 0.87, 0.24], [0.6, 0.0, 0.76], [0.4, 0.13, 0.0]])
    assert _init.mixed_clusters(around).tolist() == [False, False, True]


def test_the_switch_restores_any_partner_as_a_reason_to_move(monkeypatch):
    around = np.array([[0.0, 0.87, 0.24], [0.6, 0.0, 0.76], [0.4, 0.13, 0.0]])
    monkeypatch.setattr(_init, "MIXED_MAINLY_OTHERS", False)
    assert _init.mixed_clusters(around).tolist() == [False, True, True]


def test_a_cluster_mixed_with_the_anchor_alone_is_never_moved_by_step_3b():
    around = np.array([[0.0, 0.95, 0.96], [0.5, 0.0, 0.04], [0.5, 0.05, 0.0]])
    assert not _init.mixed_clusters(around).any()


@pytest.mark.parametrize(
    "explicit, hold_W, final_move, expected",
    [
        (False, False, True, 0.0),  # the default before a joint fit with its final move
        (True, False, True, 0.5),  # init_extrapolation given: the user's move is made
        (False, True, True, 0.5),  # spectra held from the blocks: nothing moves them later
        (False, False, False, 0.5),  # no final move: the start's move stays
    ],
)
def test_the_move_away_from_the_anchor_is_left_to_the_final_move(explicit, hold_W, final_move,
                                                                  expected):  # fmt: skip
    assert _init.anchor_move(0.5, explicit, hold_W, final_move) == expected


def test_the_switch_restores_the_half_way_move(monkeypatch):
    monkeypatch.setattr(_init, "DEFER_TO_FINAL", False)
    assert _init.anchor_move(0.5, False, False, True) == 0.5


def _fit(seed: int):
    import warnings

    from esmpy_hs.datasets import reference_sample
    from esmpy_hs.metrics import score

    s = reference_sample(300, shape=(48, 48), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                              return_info=True)  # fmt: skip
    return score(s, quantify=False), est


def test_the_reference_sample_closer_than_with_the_start_of_before(monkeypatch):
    """48 × 48 reference sample at 300 counts/px, seed 0: measured 0.33, 2.16, 3.04° (mean 1.84)
    with the default start, 0.30, 2.44, 10.0° (mean 4.25) with the start of before."""
    new, est = _fit(0)
    assert est.spectra_from_ == "pixels"
    assert np.any(est.final_shift_ > 0)  # the final move is what moved a particle
    assert new.mean_angle < 2.6
    assert max(new.angles) < 4.5
    monkeypatch.setattr(_init, "MIXED_MAINLY_OTHERS", False)
    monkeypatch.setattr(_init, "DEFER_TO_FINAL", False)
    old, _ = _fit(0)
    assert old.mean_angle > new.mean_angle + 1.0
