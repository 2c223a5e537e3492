"""decomposition on a mixed map: both smoothings fitted, the one the counts prefer kept."""

import json
import warnings

import hyperspy.api as hs
import numpy as np

from esmpy_hs import TradedPhaseWarning
from esmpy_hs.metrics import score
from esmpy_hs.nmf._data import as_compact
from esmpy_hs.nmf._split import poisson_deviance
from esmpy_hs.signals._prior_cv import NODE_MU
from esmpy_hs.signals._smoothing_choice import NODE, choose_smoothing
from tests.signals.test_prior_cv import smooth_mixture_map


def _fit(s, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TradedPhaseWarning)
        s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False, **params)


def _stored_deviance(s) -> float:
    c0, c1 = s.metadata.SmartNMF.channels
    Y = s.data.reshape(-1, s.data.shape[-1])[:, c0:c1]
    return poisson_deviance(Y, np.asarray(s.learning_results.factors)[c0:c1].T,
                            np.asarray(s.learning_results.loadings).T)  # fmt: skip


def test_a_mixed_map_keeps_the_fit_the_counts_prefer():
    """Seed 2 of the 40 × 40 spread map (measured 2026-12-01: the shares' Laplacian 0.4, 1.1,
    3.2°; the model's smoothing alone 3.8, 21.1, 39.1°, its deviance 2 931 higher): the
    shares' fit is kept, is the same fit as with ``smoothing="shares"`` given, and the record
    holds the deviance of the stored model."""
    s = smooth_mixture_map(3, 300.0, 2)
    _fit(s)
    node = s.metadata.get_item(NODE)
    assert node is not None and node.automatic
    assert node.chosen == "shares"
    assert node.deviance_per_count_model > node.deviance_per_count_shares
    np.testing.assert_allclose(_stored_deviance(s), node.deviance_per_count_shares, rtol=1e-6)
    assert np.mean(score(s, quantify=False).angles) < 5.0
    params = json.loads(s.metadata.SmartNMF.parameters)
    assert params.get("smoothing", "shares") == "shares"
    assert params["mu"] == s.metadata.get_item(NODE_MU).mu == node.mu_shares  # the kept fit's
    # smoothing given: no second fit, no record, and the same fit as the one kept above
    t = smooth_mixture_map(3, 300.0, 2)
    _fit(t, smoothing="shares")
    assert NODE not in t.metadata
    np.testing.assert_allclose(t.learning_results.factors, s.learning_results.factors)
    # a later fit that gives the smoothing leaves no record of the earlier choice
    _fit(s, smoothing="shares", max_iter=20)
    assert NODE not in s.metadata


class _Fit:
    """What choose_smoothing reads of a fitted estimator."""

    def __init__(self, components, H, stop="converged"):
        self.components_, self.H_, self.stop_reason_ = components, H, stop


def _choice(model_scale: float, stop: str = "converged"):
    rng = np.random.default_rng(0)
    C = rng.uniform(1.0, 5.0, (2, 30))
    H = rng.dirichlet([1.0, 1.0], 50).T
    Y = rng.poisson(H.T @ C)
    compact = as_compact(Y.astype(np.float64))
    s = hs.signals.Signal1D(np.zeros((2, 3)))
    s.metadata.set_item(NODE_MU, {"mu": 0.0, "automatic": True})
    first = (_Fit(C * 1.3, H), "first loadings", {"mu": 0.0})  # 30 % too bright
    second = _Fit(C * model_scale, H, stop)
    asked = []

    def check_mu(p):  # the model's own check: records its node, as auto_mu does
        asked.append(dict(p))
        s.metadata.set_item(NODE_MU, {"mu": 0.01, "automatic": True})
        return 0.01

    kept = choose_smoothing(s, first, compact, lambda p: (second, "second loadings"), check_mu,
                            print_info=False)  # fmt: skip
    return s, kept, asked


def test_the_lower_deviance_is_kept_with_its_own_mu_record():
    # the second fit is the model the counts were drawn from, the first the same model 30 %
    # too bright: the second is kept, with the μ of its own check
    s, (_est, loadings, params), asked = _choice(1.0)
    assert asked == [{"smoothing": "model"}]  # μ is checked again, not carried over
    assert loadings == "second loadings" and params == {"smoothing": "model", "mu": 0.01}
    assert s.metadata.get_item(NODE).chosen == "model" and s.metadata.get_item(NODE_MU).mu == 0.01
    # and the other way round (the second 70 % too bright): the first kept, its μ restored
    s, (_est, loadings, params), _ = _choice(1.7)
    assert loadings == "first loadings" and params == {"mu": 0.0}
    assert s.metadata.get_item(NODE).chosen == "shares" and s.metadata.get_item(NODE_MU).mu == 0.0
    assert s.metadata.get_item(NODE).deviance_difference > 0


def test_an_interrupted_second_fit_is_dropped():
    s, (_est, loadings, params), _ = _choice(1.0, stop="interrupted")
    assert loadings == "first loadings" and params == {"mu": 0.0}
    assert NODE not in s.metadata and s.metadata.get_item(NODE_MU).mu == 0.0


def test_a_particle_map_is_fitted_once():
    """The matrix of a particle map is seen pure: no μ check, no second fit, and the record of
    an earlier fit's choice is removed."""
    from tests.signals.test_n_phases import k_phase_map

    p = k_phase_map(3, 300.0, seed=4)
    p.metadata.set_item(NODE, {"chosen": "model", "automatic": True})  # an earlier fit's
    _fit(p, max_iter=30)
    assert NODE not in p.metadata and NODE_MU not in p.metadata
