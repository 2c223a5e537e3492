"""The systematic uncertainty: propagation through the normalisation, the physics of each part,
the budget's checks."""

import dataclasses

import numpy as np
import pytest
from scipy.optimize import nnls

from esmpy_hs.physics import Detector, Layer, Specimen, build_G
from esmpy_hs.physics.systematics import (
    DEFAULT_BUDGET,
    PART_NAMES,
    SystematicBudget,
    _dlnA_dlnchi,
    calibration_perturbations,
    propagate,
    sensitivity_perturbations,
    systematic_errors,
)

COMP = {"O": 0.55, "Mg": 0.2, "Si": 0.17, "Fe": 0.05, "Ca": 0.03}
AXIS = (0.3, 0.01, 1200)


def _model(**kw):
    return build_G(AXIS, 200.0, list(COMP), **kw)


def _W(model, comp=COMP):
    W = np.zeros((model.n_columns, 1))
    for el, j in model.element_rows.items():
        W[j, 0] = comp[el]
    return W


@pytest.mark.parametrize("element", ["O", "Fe"])
def test_a_sensitivity_error_moves_the_composition_as_predicted(element):
    """Scale one element's column of G by 1 + δ, refit the same spectrum: the refitted
    composition moves by Δc = c ⊙ (c·δ − δ) (first order; δ = 1 %)."""
    model = _model()
    W = _W(model)
    q = model.composition(W)
    y = model.G @ W[:, 0]
    delta = 0.01
    j = model.element_rows[element]
    G2 = model.G.copy()
    G2[:, j] *= 1 + delta
    W2 = nnls(G2, y, maxiter=2000)[0][:, None]
    moved = model.composition(W2).atomic_fractions - q.atomic_fractions
    d = np.zeros(len(q.elements))
    d[q.elements.index(element)] = delta
    predicted = propagate(q.atomic_fractions, d)
    np.testing.assert_allclose(moved, predicted, atol=2e-2 * np.abs(predicted).max())
    # the element itself goes down and the others up: the sign is physics, not convention
    i = q.elements.index(element)
    assert predicted[i, 0] < 0 and np.all(np.delete(predicted[:, 0], i) > 0)


def test_an_error_shared_by_every_element_cancels():
    c = np.array([[0.5, 0.2], [0.3, 0.3], [0.2, 0.5]])
    np.testing.assert_allclose(propagate(c, np.full(3, 0.1)), 0.0, atol=1e-15)
    with pytest.raises(ValueError, match="shape"):
        propagate(c, np.zeros((2, 2)))


def test_zero_budget_gives_no_systematic_error():
    model = _model(specimen=Specimen(100.0, 4.0))
    W = _W(model)
    q = model.composition(W)
    parts = systematic_errors(model, W, q.atomic_fractions, q.weight_fractions,
                              SystematicBudget.zero())  # fmt: skip
    for name in (*PART_NAMES, "total"):
        np.testing.assert_array_equal(parts[name][0], 0.0)
        np.testing.assert_array_equal(parts[name][1], 0.0)


def test_parts_add_in_quadrature_and_light_elements_carry_more():
    model = _model(specimen=Specimen(100.0, 4.0))
    W = _W(model)
    q = model.composition(W)
    parts = systematic_errors(model, W, q.atomic_fractions, q.weight_fractions)
    total = np.sqrt(sum(parts[p][0] ** 2 for p in PART_NAMES))
    np.testing.assert_allclose(parts["total"][0], total)
    # the relative sensitivity error of O (light: K line at 0.5 keV, ω_K poorly known, most
    # absorbed, most sensitive to the window) is well above that of Si (1.74 keV)
    rms = np.zeros(len(q.elements))
    for sources in sensitivity_perturbations(model, W).values():
        for _, d in sources:
            rms += d[:, 0] ** 2
    rms = np.sqrt(rms)
    assert rms[q.elements.index("O")] > 1.5 * rms[q.elements.index("Si")]
    # absorption and efficiency act, and below the atomic data for this thin specimen
    for p in ("absorption", "detector efficiency"):
        assert np.all(parts[p][0][:, 0] > 0)
        assert np.all(parts[p][0][:, 0] < parts["atomic data"][0][:, 0])
    # no thickness: no absorption part
    m0 = _model()
    p0 = systematic_errors(m0, _W(m0), q.atomic_fractions, q.weight_fractions)
    np.testing.assert_array_equal(p0["absorption"][0], 0.0)


def test_family_budget_reads_the_cited_table():
    b = DEFAULT_BUDGET
    assert b.family_error("O", "K") == pytest.approx(np.hypot(0.11, 0.20))
    assert b.family_error("Mg", "K") == pytest.approx(np.hypot(0.11, 0.05))
    assert b.family_error("Fe", "K") == pytest.approx(np.hypot(0.11, 0.02))
    assert b.family_error("Pt", "M") == pytest.approx(np.hypot(0.11, 0.30))


def test_window_term_is_the_derivative_of_the_efficiency():
    """δ of the Si3N4 window for O equals Δ ln ε(O Kα) for a window 25 % thicker (first order:
    compared with a 0.1 % finite difference, scaled). The window is stated, so its layers'
    thicknesses are the sources."""
    model = _model(detector=Detector("Si3N4"))
    W = _W(model)
    sources = dict(sensitivity_perturbations(model, W)["detector efficiency"])
    assert "window (not stated)" not in sources
    d_o = sources["window Si3N4"][model_index(model, "O"), 0]
    e = np.array([0.5249])
    thick = Detector(window=[Layer("Si3N4", 40.0 * 1.001, 3.44), Layer("Al", 30.0, 2.70)])
    finite = np.log(thick.efficiency(e)[0] / Detector().efficiency(e)[0]) / 0.001 * 0.25
    assert d_o == pytest.approx(finite, rel=2e-2)
    assert d_o < -0.01  # a thicker window loses O counts


def test_a_window_not_stated_spans_the_window_types():
    """With the window not stated (the default Detector()), one source replaces the layers':
    ln ε uniform between windowless and the polymer window, 1σ = range / √12, checked at O Kα
    against the two presets' efficiencies (the polymer's grid, the same at every energy,
    divided out); O's stated error grows against a stated window."""
    model = _model()
    assert not model.detector.window_stated
    W = _W(model)
    sources = dict(sensitivity_perturbations(model, W)["detector efficiency"])
    assert not any(label.startswith("window Si3N4") for label in sources)
    e = np.array([0.5249])
    poly = Detector("polymer")
    span = np.log(poly.efficiency(e)[0] / poly.grid_open_fraction
                  / Detector("windowless").efficiency(e)[0])  # fmt: skip
    d_o = sources["window (not stated)"][model_index(model, "O"), 0]
    assert d_o == pytest.approx(span / np.sqrt(12.0), rel=1e-2)
    assert -0.2 < d_o < -0.05  # about 10 % for O Kα: the size the module docstring states
    q = model.composition(W)
    stated = _model(detector=Detector("Si3N4"))
    err = systematic_errors(model, W, q.atomic_fractions, q.weight_fractions)
    err_stated = systematic_errors(stated, W, q.atomic_fractions, q.weight_fractions)
    i = q.elements.index("O")
    assert err["detector efficiency"][0][i, 0] > 1.5 * err_stated["detector efficiency"][0][i, 0]
    # a budget that does not ask for it keeps the assumed window's layers
    keep = SystematicBudget(unstated_window=None)
    labels = [lab for lab, _ in sensitivity_perturbations(model, W, keep)["detector efficiency"]]
    assert "window Si3N4" in labels and "window (not stated)" not in labels
    with pytest.raises(ValueError, match="unstated_window"):
        SystematicBudget(unstated_window=("windowless", "glass"))


def test_a_detector_keeps_whether_its_window_was_stated():
    for det, stated in ((Detector(), False), (Detector("Si3N4"), True),
                        (Detector([Layer("Al", 30, 2.7)]), True)):  # fmt: skip
        back = Detector.from_dict(det.to_dict())
        assert back.window_stated is stated
        np.testing.assert_allclose(back.efficiency([0.5, 2.0]), det.efficiency([0.5, 2.0]))
    assert "assumed" in repr(Detector()) and "assumed" not in repr(Detector("Si3N4"))


def model_index(model, element):
    return list(model.element_rows).index(element)


def test_absorption_slope_matches_finite_difference():
    chi = np.array([1e-8, 0.01, 0.3, 2.0])
    A = lambda x: -np.expm1(-x) / x  # noqa: E731
    h = 1e-6
    fd = (np.log(A(chi * (1 + h))) - np.log(A(chi * (1 - h)))) / (2 * h)
    np.testing.assert_allclose(_dlnA_dlnchi(chi), fd, rtol=1e-4, atol=1e-9)


def test_calibration_part_refits_the_moved_model():
    model = _model()
    W = _W(model)
    assert calibration_perturbations(model, W, None) == []
    assert calibration_perturbations(model, W, {"applied": False}) == []
    cal = {"applied": True, "gain": 1.0, "uncertainty": {"offset_shift_eV": 5.0}}
    ((label, Wm, Wr),) = calibration_perturbations(model, W, cal)
    assert label == "offset"
    assert np.abs(Wm - Wr).max() > 1e-4 * np.abs(W).max()  # the moved model fits otherwise
    np.testing.assert_allclose(Wr, W, rtol=1e-3, atol=1e-6)  # the refit on the same model
    q = model.composition(W)
    only_calibration = dataclasses.replace(SystematicBudget.zero(), calibration=True)
    parts = systematic_errors(model, W, q.atomic_fractions, q.weight_fractions,
                              only_calibration, calibration=cal)  # fmt: skip
    assert parts["atomic data"][0].max() == 0
    assert parts["calibration"][0].max() > 0  # a 5 eV shift moves the fit


@pytest.mark.parametrize(
    "kw",
    [{"window_relative": -0.1}, {"attenuation": float("nan")}, {"cross_section": {"K": 0.1}},
     {"emission_K": ()}],
)  # fmt: skip
def test_budget_refuses_bad_input(kw):
    with pytest.raises(ValueError):
        SystematicBudget(**kw)
