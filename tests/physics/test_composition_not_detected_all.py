"""A phase none of whose elements is detected is not determined, not a column of zeros."""

from __future__ import annotations

import numpy as np

from esmpy_hs.physics.composition import Quantification, mark_not_detected


def _q() -> Quantification:
    at = np.array([[0.6, 0.5], [0.4, 0.5]])
    return Quantification(elements=["C", "O"], phase_names=["phase 0", "phase 1"],
                          atomic_fractions=at.copy(), weight_fractions=at.copy(),
                          atomic_errors=0.01 * at, weight_errors=0.01 * at,
                          counts=100.0 * at)  # fmt: skip


def test_every_element_not_detected_marks_the_phase_undetermined():
    q = mark_not_detected(_q(), {"phase 0": {"C": 3.0, "O": 0.0}, "phase 1": {"O": 1.0}})
    assert "phase 0" in q.undetermined and "no element signal" in q.undetermined["phase 0"]
    assert np.all(np.isnan(q.atomic_fractions[:, 0]))
    assert "phase 0" not in q.not_detected
    # the other phase is renormalised without its undetected O, as before
    np.testing.assert_allclose(q.atomic_fractions[:, 1], [1.0, 0.0])
    assert q.not_detected["phase 1"] == {"O": 1.0}
    assert "phase 0: not determined" in str(q)
