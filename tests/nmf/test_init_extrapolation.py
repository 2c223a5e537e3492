"""The start's extrapolation of minor phases to the non-negative composition bound."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf._init import extrapolate_minor_phases
from esmpy_hs.nmf._solver import WParams


def _wp(m: int) -> WParams:
    return WParams(False, np.ones(m, dtype=bool), None, 1e-10, 1e-13)


def test_a_mixture_goes_back_to_the_true_phase():
    """matrix (A .5, B .5) and particle (A 1, B 0) seen as a 50/50 mixture: γ = 1 recovers it."""
    matrix = np.array([0.5, 0.5])
    particle = np.array([1.0, 0.0])
    W = np.column_stack([matrix, 0.5 * matrix + 0.5 * particle])
    Hb = np.array([[1.0, 0.0], [0.0, 1.0]])
    W2, Hb2, _ = extrapolate_minor_phases(W, Hb, _wp(2), anchor=0, gamma=1.0)
    np.testing.assert_allclose(W2[:, 1], particle, atol=1e-9)
    np.testing.assert_allclose(W2[:, 0], matrix)
    # the block that was "pure mixture" is now half matrix, half particle: same model
    np.testing.assert_allclose(W2 @ Hb2[1], W @ Hb[1])
    W_half, _, _ = extrapolate_minor_phases(W, Hb, _wp(2), anchor=0, gamma=0.5)
    np.testing.assert_allclose(W_half[:, 1], [0.875, 0.125])


def test_trace_elements_of_the_anchor_do_not_stop_the_move():
    """An element the matrix holds at 1e-6 (the minor phase at the 1e-10 floor) is no bound."""
    matrix = np.array([0.5, 0.5, 1e-6])
    mixture = np.array([0.75, 0.25, 1e-10])
    W = np.column_stack([matrix, mixture])
    W2, _, _ = extrapolate_minor_phases(W, np.full((1, 2), 0.5), _wp(3), anchor=0, gamma=1.0)
    assert W2[0, 1] == pytest.approx(1.0, rel=1e-4)
    assert W2[1, 1] == pytest.approx(0.0, abs=1e-6)


def test_surroundings_of_a_band_between_two_grains_are_both_grains():
    """A band on the boundary between grains A (left) and B (right) is surrounded by both, a
    particle inside A by A alone; each column sums to 1 over the other phases."""
    from esmpy_hs.nmf._init import surroundings

    rows, cols = 12, 12
    H = np.zeros((rows, cols, 4))
    H[:, :6, 0] = 1.0  # grain A
    H[:, 6:, 1] = 1.0  # grain B
    H[:, 5:7, :2] = 0.0
    H[:, 5:7, 2] = 1.0  # the band on the boundary
    H[2:4, 1:3, :] = 0.0
    H[2:4, 1:3, 3] = 1.0  # a particle inside grain A
    C = surroundings(H.reshape(-1, 4), (rows, cols))
    np.testing.assert_allclose(C.sum(axis=0), 1.0)
    np.testing.assert_allclose(np.diag(C), 0.0)
    assert C[0, 2] == pytest.approx(C[1, 2], abs=0.05) and C[0, 2] > 0.4  # band: A and B
    assert C[0, 3] > 0.95  # particle: A
    # without the grid (no neighbours), a phase found only in pure pixels shares them with no
    # other phase: equal weights
    C0 = surroundings(H.reshape(-1, 4), None)
    np.testing.assert_allclose(C0[:, 2], [1 / 3, 1 / 3, 0.0, 1 / 3])


def test_a_band_mixed_with_two_grains_goes_back_to_the_true_phase():
    """A band phase seen as 0.3 film + 0.35 A + 0.35 B: moved away from the A–B mixture around
    it (found by the largest move that keeps elements ≥ 0), it is the film again; the anchor
    alone (A) cannot take B's part out."""
    A = np.array([0.6, 0.4, 0.0, 0.0])
    B = np.array([0.0, 0.5, 0.5, 0.0])
    film = np.array([0.0, 0.0, 0.2, 0.8])
    band = 0.35 * A + 0.35 * B + 0.3 * film
    W = np.column_stack([A, B, band])
    Hb = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    ref = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
    W2, Hb2, _ = extrapolate_minor_phases(W, Hb, _wp(4), anchor=0, gamma=1.0, reference=ref)
    moved = W2[:, 2] / W2[:, 2].sum()
    cos = moved @ film / np.linalg.norm(moved) / np.linalg.norm(film)
    assert cos > 0.999
    np.testing.assert_allclose(W2 @ Hb2.T, W @ Hb.T, atol=1e-9)  # the same model
    np.testing.assert_allclose(Hb2.sum(axis=1), 1.0)
    # the anchor alone: B's part stays in the band
    W3, _, _ = extrapolate_minor_phases(W, Hb, _wp(4), anchor=0, gamma=1.0)
    moved3 = W3[:, 2] / W3[:, 2].sum()
    assert moved3 @ film / np.linalg.norm(moved3) / np.linalg.norm(film) < 0.95
