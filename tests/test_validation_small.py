"""A small, fast version of the validation study (benchmarks/validate_paper.py, issue 8).

The reference sample (``esmpy_hs.datasets.reference_sample``) on 48 × 48 pixels at 300 counts
per pixel, noise seed 0, fitted with smart_nmf's defaults and scored against its ground truth.
The bounds are the values measured on this version with a margin, so that a regression in the
physics model, the quantification or the solver turns CI red.

Measured (2 cores, about 4 s for the fit, 490 iterations, converged; λ chosen from the dose,
0.20 here):

=================  =========  ========  =========================================
phase              angle (°)  map MSE   |at.% error| of the major elements
=================  =========  ========  =========================================
bridgmanite        0.20       0.00289   Mg 0.04, Si 0.02, O 0.07
ferropericlase     2.40       0.00062   Mg 2.31, Fe 0.62, O 3.01
Ca-perovskite      9.84       0.00213   Ca 4.47, Si 3.48, O 1.65
mean               4.15       0.00188
=================  =========  ========  =========================================

(With λ = 0.1, the previous default, the Ca-perovskite was at 8.57° and Ca 3.86 at.% off.)

The Ca-perovskite is systematically pushed past its true composition (its 2 at.% of Mg goes to
0, Ca comes out high and Si low) at every seed and size tried, hence its wider bounds. Since the
start ignores the anchor phase's trace elements when it bounds the extrapolation (before, a
trace at 1e-6 stopped the ferropericlase from moving at all), all six seeds tried on 48 × 48
separate the three phases (mean angle 2.9–4.2° with λ = 0.2, 2.6–3.7° with λ = 0.1; before,
seed 5 left the ferropericlase mixed at 22°), at the price of a Ca-perovskite pushed a little
further (5.9° → 8.6° on seed 0 here, 5.3° → 6.3° on the 128 × 128 sample, with λ = 0.1).
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.datasets import get_truth, reference_sample
from esmpy_hs.metrics import score

SHAPE = (48, 48)
DOSE = 300.0
SEED = 0

#: Upper bounds on the spectral angle (degrees), per phase (measured 0.20, 2.40, 9.84).
ANGLE_MAX = {"bridgmanite": 1.0, "ferropericlase": 4.0, "Ca-perovskite": 11.5}
MEAN_ANGLE_MAX = 5.0  # measured 4.15
#: Upper bounds on the map MSE, per phase (measured 0.0029, 0.0006, 0.0021).
MSE_MAX = {"bridgmanite": 0.0035, "ferropericlase": 0.002, "Ca-perovskite": 0.0028}
MEAN_MSE_MAX = 0.0025  # measured 0.0019
#: Upper bounds on |at.% error| of the major elements (≥ 5 at.% in the truth).
AT_ERROR_MAX = {
    "bridgmanite": {"Mg": 0.5, "Si": 0.5, "O": 0.5},  # measured 0.04, 0.02, 0.07
    "ferropericlase": {"Mg": 3.0, "Fe": 1.0, "O": 3.5},  # measured 2.31, 0.62, 3.01
    "Ca-perovskite": {"Ca": 5.5, "Si": 4.5, "O": 2.5},  # measured 4.47, 3.48, 1.65
}


@pytest.fixture(scope="module")
def fitted():
    s = reference_sample(dose=DOSE, shape=SHAPE, random_state=SEED)
    est = s.decomposition(
        algorithm="smart_nmf", output_dimension=3, print_info=False, return_info=True
    )
    sc = score(s)
    q = s.quantify_phases()
    names = list(q.atomic_percent)
    at = {p: q.atomic_percent[names[sc.permutation[i]]] for i, p in enumerate(sc.phase_names)}
    return s, est, sc, at


def test_fit_converges(fitted):
    _, est, _, _ = fitted
    assert est.stop_reason_ == "converged"
    assert est.n_iter_ < 1500  # measured 490


def test_the_particles_are_listed_as_never_pure_and_the_matrix_is_not(fitted):
    # the two particles reach at most 0.5 of a pixel (the truth); the matrix is pure around them
    s, _, sc, _ = fitted
    q = s.quantify_phases()
    names = list(q.atomic_percent)
    flagged = {sc.phase_names[i] for i, j in enumerate(sc.permutation) if names[j] in q.never_pure}
    assert flagged == {"ferropericlase", "Ca-perovskite"}


def test_phases_match_one_to_one(fitted):
    _, _, sc, _ = fitted
    assert sorted(sc.permutation) == [0, 1, 2]
    assert not sc.disagree  # matching by angle and by map MSE agree


def test_spectral_angles(fitted):
    _, _, sc, _ = fitted
    for name, angle in zip(sc.phase_names, sc.angles, strict=True):
        assert angle <= ANGLE_MAX[name], f"{name}: {angle:.2f}° > {ANGLE_MAX[name]}°"
    assert sc.mean_angle <= MEAN_ANGLE_MAX


def test_map_mse(fitted):
    _, _, sc, _ = fitted
    for name, mse in zip(sc.phase_names, sc.mse, strict=True):
        assert mse <= MSE_MAX[name], f"{name}: map MSE {mse:.5f} > {MSE_MAX[name]}"
    assert sc.mean_mse <= MEAN_MSE_MAX


def test_major_element_compositions(fitted):
    s, _, sc, _ = fitted
    truth = get_truth(s)
    for name, bounds in AT_ERROR_MAX.items():
        comp = truth["compositions"][name]
        total = sum(comp.values())
        majors = {el for el, x in comp.items() if 100 * x / total >= 5.0}
        assert majors == set(bounds), name  # the bounds cover exactly the major elements
        for el, bound in bounds.items():
            err = sc.composition_errors[name][el]
            assert err <= bound, f"{name} {el}: |error| {err:.2f} at.% > {bound}"


def test_phases_read_as_minerals(fitted):
    _, _, _, at = fitted
    brg, fp, cpv = at["bridgmanite"], at["ferropericlase"], at["Ca-perovskite"]
    # truth: O/Si 1.99, (Mg+Fe)/Si 1.28, O/(Mg+Fe) 0.597, Ca/Si 1.087
    assert brg["O"] / brg["Si"] == pytest.approx(0.436 / 0.219, rel=0.03)  # measured 2.00
    assert (brg["Mg"] + brg["Fe"]) / brg["Si"] == pytest.approx(0.280 / 0.219, rel=0.03)  # 1.28
    assert fp["Si"] < 1.0 and fp["Ca"] < 1.0  # measured 0.00 and 0.00 at.%
    assert fp["O"] / (fp["Mg"] + fp["Fe"]) == pytest.approx(0.374 / 0.626, rel=0.15)  # 0.521
    assert 0.8 < cpv["Ca"] / cpv["Si"] < 2.0  # truth 1.09; measured 1.73 (Ca high, see above)
    assert all(np.isfinite(v) for c in at.values() for v in c.values())


# --------------------------------------------------------------------------- low dose
#: The same map at 18 counts per pixel (the paper's "low signal"), seed 0, defaults: the spectra
#: come from the binned start (``spectra_from_ == "blocks"``, with the minor phases extrapolated
#: all the way to the composition bound) and λ from the dose (3.3).
#: Measured: angles 0.99, 9.72, 3.70° (mean 4.8), map MSE 0.0014, 610 iterations, 2 s. Without
#: the sparsity prior in the start's refinement it gave 5.7° and 0.0027, with the start
#: extrapolated half way 9.4° and 0.0035; with ``spectra_from="pixels"`` (the joint fit at full
#: resolution) 21.4° and 0.0174 (λ = 1.7), the particle maps collapsing.
LOW_DOSE = 18.0
LOW_ANGLE_MAX = {"bridgmanite": 2.0, "ferropericlase": 12.0, "Ca-perovskite": 5.0}
LOW_MEAN_ANGLE_MAX = 6.0  # measured 4.8
LOW_MEAN_MSE_MAX = 0.002  # measured 0.0014


@pytest.fixture(scope="module")
def fitted_low():
    s = reference_sample(dose=LOW_DOSE, shape=SHAPE, random_state=SEED)
    est = s.decomposition(
        algorithm="smart_nmf", output_dimension=3, print_info=False, return_info=True
    )
    return est, score(s)


def test_low_dose_uses_binned_spectra_and_dose_lambda(fitted_low):
    est, _ = fitted_low
    assert est.spectra_from_ == "blocks"
    assert 2.0 < est.lambda_L_ < 5.0
    assert est.init_extrapolation_ == 1.0
    assert est.stop_reason_ == "converged"


def test_low_dose_angles_and_maps(fitted_low):
    _, sc = fitted_low
    assert sorted(sc.permutation) == [0, 1, 2]
    for name, angle in zip(sc.phase_names, sc.angles, strict=True):
        assert angle <= LOW_ANGLE_MAX[name], f"{name}: {angle:.2f}° > {LOW_ANGLE_MAX[name]}°"
    assert sc.mean_angle <= LOW_MEAN_ANGLE_MAX
    assert sc.mean_mse <= LOW_MEAN_MSE_MAX
