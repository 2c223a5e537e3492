"""estimate_lambda: the Laplacian weight from held-out counts, on the project's simulator."""

import numpy as np
import pytest

from esmpy_hs.datasets import get_truth
from esmpy_hs.metrics import map_mse, match_phases
from tests.signals.test_n_phases import k_phase_map


def _mse(s, k, **params):
    s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False, **params)
    t = get_truth(s)
    maps = np.asarray(t["maps"]).reshape(k, -1)
    c0, c1 = s.metadata.SmartNMF.channels
    H = np.asarray(s.learning_results.loadings).T
    comps = np.asarray(s.learning_results.factors).T[:, c0:c1]
    m = match_phases(np.asarray(t["spectra"])[:, c0:c1], comps, maps, H)
    return float(map_mse(maps, H[list(m.permutation)], renormalise=True))


def test_choice_is_a_candidate_and_no_worse_than_the_formula():
    s = k_phase_map(3, 60.0, seed=4)
    factors = (0.25, 1.0, 4.0)
    lam = s.estimate_lambda(3, factors=factors, print_info=False)
    node = s.metadata.SmartNMF_lambda
    assert node.factor in factors
    assert lam == pytest.approx(node.factor * node.formula)
    assert node.scores.shape == (2, 3)
    # the formula's λ is what a default fit uses
    mse_formula = _mse(s, 3)
    mse_cv = _mse(s, 3, lambda_L=lam)
    # held-out counts must not pick a λ that maps the phases clearly worse than the formula
    assert mse_cv <= 1.25 * mse_formula + 1e-4, (node.factor, mse_cv, mse_formula)


def test_refuses_bad_input():
    s = k_phase_map(2, 100.0, seed=0)
    for bad in ([], [0.5, -1.0], [1.0, 1.0], ["a"], [np.inf]):
        with pytest.raises(ValueError, match="factors"):
            s.estimate_lambda(2, factors=bad, print_info=False)
    with pytest.raises(ValueError, match="output_dimension"):
        s.estimate_lambda(0, print_info=False)
    with pytest.raises(TypeError, match="sets lambda_L"):
        s.estimate_lambda(2, lambda_L=0.5, print_info=False)
    line = s.inav[:, 0]
    with pytest.raises(ValueError, match="2-D map"):
        line.estimate_lambda(2, print_info=False)
