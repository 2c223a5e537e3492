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


def test_a_poorly_known_minor_element_of_the_matrix_does_not_stop_the_move():
    """Matrix (Rb .9, W .1, N 0), particle (N 1) seen as a 50/50 mixture whose W share came out
    0.04 instead of 0.05 (a minor element under an overlapping line): the first element to
    reach zero, W, stops the move at β = 2/3, short of the particle; with W known to ± 0.01
    (2 standard errors cover the 0.02 the move needs), Rb bounds it at β = 1 and the phase
    is the particle (W clipped to the floor)."""
    from esmpy_hs.nmf._init import BOUND_Z

    matrix = np.array([0.9, 0.1, 0.0])
    mixture = np.array([0.45, 0.04, 0.5])
    W = np.column_stack([matrix, mixture])
    Hb = np.array([[1.0, 0.0], [0.0, 1.0]])
    _, _, beta = extrapolate_minor_phases(W, Hb, _wp(3), anchor=0, gamma=1.0)
    assert beta[1] == pytest.approx(0.04 / 0.06)
    errors = np.zeros_like(W)
    errors[1, 1] = 0.02 / BOUND_Z
    W2, _, beta = extrapolate_minor_phases(W, Hb, _wp(3), anchor=0, gamma=1.0, errors=errors)
    assert beta[1] == pytest.approx(1.0)
    np.testing.assert_allclose(W2[:, 1], [0.0, 0.0, 1.0], atol=1e-9)
    # where the errors are small the first element to reach zero still bounds the move
    errors[1, 1] = 1e-4
    _, _, beta = extrapolate_minor_phases(W, Hb, _wp(3), anchor=0, gamma=1.0, errors=errors)
    assert beta[1] == pytest.approx((0.04 + BOUND_Z * 1e-4) / 0.06)


def test_spectra_errors_are_the_poisson_errors_of_the_blocks():
    """With G the identity each channel is one entry of W. Blocks pure in one phase: phase j,
    seen pure in blocks of N counts in all, has σ_i = √(w_i Σw / N) (w_i Σw / N is the
    variance of its counts in channel i, in units of W); entries at zero get no error; the
    errors scale with W and as 1/√N. A phase seen only mixed, on top of another phase's
    counts, is known worse than from the same counts of its own; overlapping lines make each
    worse than separate ones."""
    from esmpy_hs.nmf._init import spectra_errors

    W = np.array([[2.0, 0.0], [1.0, 3.0], [1.0, 1.0]])
    Hb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    counts = np.array([150.0, 250.0, 100.0])
    err = spectra_errors(np.eye(3), W, Hb, counts, chunk=2)
    N = np.array([400.0, 100.0])
    np.testing.assert_allclose(err, np.sqrt(W * W.sum(axis=0) / N), rtol=1e-6)
    assert err[0, 1] == 0.0
    np.testing.assert_allclose(spectra_errors(np.eye(3), 5 * W, Hb, 4 * counts), 5 * err / 2,
                               rtol=1e-6)  # fmt: skip
    # phase 1 with its 100 counts in a block that also holds 400 counts of phase 0
    Hm = np.array([[1.0, 0.0], [1.0, 0.25]])  # both spectra sum to 4: 400 + 100 counts
    mixed = spectra_errors(np.eye(3), W, Hm, np.array([400.0, 500.0]))
    alone = spectra_errors(np.eye(3), W, np.array([[1.0, 0.0], [0.0, 1.0]]),
                           np.array([400.0, 100.0]))  # fmt: skip
    assert np.all(mixed[1:, 1] > 1.2 * alone[1:, 1])
    # two overlapping lines: each alone is known worse than the sum
    G = np.array([[1.0, 0.9], [0.0, 0.1], [0.1, 0.0]])
    w = np.array([[1.0], [1.0]])
    one = np.ones((1, 1))
    e2 = spectra_errors(G, w, one, np.array([1000.0]))
    e_sep = spectra_errors(np.eye(2), w, one, np.array([1000.0]))
    assert np.all(e2[:, 0] > 2 * e_sep[:, 0])
