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
