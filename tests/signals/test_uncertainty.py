"""quantify_phases(uncertainty=...): the systematic and total modes, their parts, bad input."""

import numpy as np
import pytest

from esmpy_hs.physics.systematics import PART_NAMES, SystematicBudget
from tests.signals.test_n_phases import k_phase_map


@pytest.fixture(scope="module")
def fitted():
    s = k_phase_map(2, 300.0, seed=4)
    s.decomposition(algorithm="smart_nmf", output_dimension=2, print_info=False, max_iter=60)
    return s


def test_systematic_adds_a_part_in_quadrature(fitted):
    q0 = fitted.quantify_phases()
    q = fitted.quantify_phases(uncertainty="systematic")
    np.testing.assert_allclose(q.atomic_fractions, q0.atomic_fractions)
    counting, _ = q.error_parts["counting"]
    np.testing.assert_allclose(counting, q0.atomic_errors)
    sys_at, sys_wt = q.error_parts["systematic"]
    np.testing.assert_allclose(q.atomic_errors, np.hypot(q0.atomic_errors, sys_at))
    np.testing.assert_allclose(q.weight_errors, np.hypot(q0.weight_errors, sys_wt))
    np.testing.assert_allclose(sys_at, np.sqrt(sum(q.error_parts[p][0] ** 2 for p in PART_NAMES)))
    # the model's accuracy dominates the counting error on the major elements of this map
    major = q.atomic_fractions >= 0.1
    assert np.all(sys_at[major] > 3 * q0.atomic_errors[major])
    assert np.all(sys_at[major] < 0.5 * q.atomic_fractions[major])  # not vacuous
    node = fitted.metadata.SmartNMF_uncertainty
    assert node.uncertainty == "systematic"
    assert node.systematic_atomic_errors.shape == q.atomic_fractions.shape
    assert set(node.systematic_parts_atomic.keys()) == {p.replace(" ", "_") for p in PART_NAMES}
    assert "systematic" in str(q)
    # counting errors alone say what they leave out
    plain = str(fitted.quantify_phases())
    assert "counting only" in plain and "'systematic' adds it" in plain
    assert "counting only" not in str(q)


def test_a_window_is_stated_by_the_file_or_assumed(fitted):
    """The fitted map names no window: the model's detector says so and the budget carries the
    window-type source; a window named in the metadata is stated (and the signal's own metadata
    is not touched by building the model)."""
    from esmpy_hs.signals._model import build_model
    from esmpy_hs.signals._record import read_record

    assert not read_record(fitted).physics_model().detector.window_stated
    s = fitted.deepcopy()
    s.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.efficiency", "windowless")
    model = build_model(s)[0]
    assert model.detector.window_stated and model.detector.window_name == "windowless"
    assert fitted.metadata.get_item("Acquisition_instrument.TEM.Detector.EDS.efficiency") is None


def test_zero_budget_gives_the_counting_errors(fitted):
    q0 = fitted.quantify_phases()
    q = fitted.quantify_phases(uncertainty="systematic", budget=SystematicBudget.zero())
    np.testing.assert_array_equal(q.atomic_errors, q0.atomic_errors)
    np.testing.assert_array_equal(q.weight_errors, q0.weight_errors)


def test_total_is_counting_splits_and_systematic(fitted):
    q = fitted.quantify_phases(uncertainty="total", n_splits=1)
    parts = q.error_parts
    expected = np.sqrt(parts["counting"][0] ** 2 + parts["splits"][0] ** 2
                       + parts["systematic"][0] ** 2)  # fmt: skip
    np.testing.assert_allclose(q.atomic_errors, expected)
    np.testing.assert_allclose(q.split_atomic_errors, parts["splits"][0])
    assert fitted.metadata.SmartNMF_uncertainty.n_splits == 1


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"uncertainty": "bootstrap"}, ValueError, "uncertainty must be"),
        ({"uncertainty": "systematic", "budget": {"K": 0.1}}, TypeError, "SystematicBudget"),
        ({"budget": SystematicBudget()}, ValueError, "budget is used with"),
        ({"uncertainty": "total", "n_splits": 0}, ValueError, "n_splits"),
    ],
)
def test_bad_input_is_refused(fitted, kw, exc, match):
    with pytest.raises(exc, match=match):
        fitted.quantify_phases(**kw)
