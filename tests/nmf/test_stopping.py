"""The stopping rules: the movement rule (``angle_tol``, ``abundance_tol``) beside the
relative-objective rule (``tol``); the extrapolation of the updates (``momentum``).

The movement rule stops when, over :data:`MOVE_WINDOW` iterations, no phase spectrum turned by
more than ``angle_tol`` degrees and the abundances moved by less than ``abundance_tol`` (root
mean square). It must stop before the objective rule, and its answer must be within the stated
quality of a fit run far longer.
"""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF, _solver
from esmpy_hs.nmf._solver import MOVE_WINDOW

from .conftest import synthetic

SHAPE = (20, 20)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) between the rows of a and b, row by row."""
    c = np.einsum("kn,kn->k", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    G, W, H = synthetic(rng, shape=SHAPE, k=3, pure=False)
    X = rng.poisson(300.0 * (G @ W @ H).T)
    return G, X


def _fit(G, X, **kw) -> SmartNMF:
    kw = {"shape_2d": SHAPE, "progress": False, "max_iter": 3000, **kw}
    return SmartNMF(G, 3, **kw).fit(X)


@pytest.fixture(scope="module")
def long_run(problem):
    G, X = problem
    return _fit(G, X, angle_tol=0.0, momentum=0.0, tol=1e-13, max_iter=6000)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_movement_rule_stops_earlier_and_close_to_the_long_run(problem, long_run, momentum):
    G, X = problem
    new = _fit(G, X, momentum=momentum)  # both rules
    old = _fit(G, X, angle_tol=0.0, momentum=momentum)  # the objective rule alone
    assert new.stop_reason_ == "converged" and long_run.stop_reason_ == "converged"
    assert new.n_iter_ < old.n_iter_ < long_run.n_iter_
    # it stopped on the movement rule: its last check is within both tolerances
    it, angle, rms, _ = new.move_history_[-1]
    assert it == new.n_iter_ and it % MOVE_WINDOW == 0
    assert angle <= new.angle_tol and rms <= new.abundance_tol
    # within the documented quality of the long run: 0.2° for every spectrum, 1e-4 map MSE
    assert _angles(new.components_, long_run.components_).max() < 0.2
    assert ((new.H_ - long_run.H_) ** 2).mean(axis=1).max() < 1e-4


def test_extrapolation_takes_fewer_iterations(problem):
    G, X = problem
    plain = _fit(G, X, momentum=0.0)
    fast = _fit(G, X)  # momentum=0.5
    assert fast.n_iter_ + fast.n_restarts_ < 0.75 * plain.n_iter_


@pytest.mark.parametrize("loss_every", [1, 5])
def test_extrapolation_keeps_the_objective_monotone(problem, loss_every):
    G, X = problem
    est = _fit(G, X, momentum=1.0, tol=0.0, max_iter=300, loss_every=loss_every)
    F = np.array(est.loss_history_)
    assert est.loss_iterations_ == list(range(0, 301, loss_every))  # F checked, and the last
    assert np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))
    # the iterate returned is the one whose F was recorded last
    assert -est.score(X) == pytest.approx(F[-1], rel=1e-12)
    assert est.n_iter_ == 300
    if loss_every == 1:
        # β = 1 from the start overshoots at least once here: the return path ran
        assert est.n_restarts_ >= 1


def test_a_new_G_checks_the_extrapolations_before_it(problem, monkeypatch):
    # a callback replacing G every 10 iterations (the absorption refresh) ends each epoch before
    # the objective is evaluated again in it (every 10 iterations): the extrapolations of the
    # epoch are checked at its end. Here the "new" G is the same one, so F stays comparable,
    # and β may grow to 3 so that extrapolated steps do raise F.
    G, X = problem
    monkeypatch.setattr(_solver, "MOMENTUM_MAX", 3.0)

    def same_G(est, it, W, H):
        return G.copy() if it % 10 == 0 else None

    est = _fit(G, X, momentum=1.0, tol=0.0, max_iter=200, callback=same_G)
    F = np.array(est.loss_history_)
    assert est.n_restarts_ > 0  # some extrapolations were undone at an epoch's end
    assert np.all(np.diff(F) <= 1e-12 * np.abs(F[:-1]))
    assert -est.score(X) <= F[-1] * (1 + 1e-12)


def test_the_objective_rule_alone_records_the_movements(problem):
    G, X = problem
    old = _fit(G, X, angle_tol=0.0, momentum=0.0)
    off = _fit(G, X, abundance_tol=0.0, momentum=0.0)
    # either zero tolerance turns the movement rule off: the same fit
    assert old.n_iter_ == off.n_iter_
    np.testing.assert_array_equal(old.W_, off.W_)
    its = [m[0] for m in old.move_history_]
    assert its == list(range(MOVE_WINDOW, old.n_iter_ + 1, MOVE_WINDOW))[: len(its)]
    # the spectra settle: the last movements are smaller than the first
    assert old.move_history_[-1][1] < old.move_history_[0][1]


def test_loose_tolerances_stop_at_the_first_comparison(problem):
    G, X = problem
    est = _fit(G, X, angle_tol=180.0, abundance_tol=1.0)
    assert est.n_iter_ == MOVE_WINDOW and est.stop_reason_ == "converged"
    assert est.loss_iterations_[-1] == MOVE_WINDOW  # F of the iterate kept is recorded


def test_tol_zero_runs_max_iter(problem):
    G, X = problem
    est = _fit(G, X, tol=0.0, max_iter=40, angle_tol=180.0, abundance_tol=1.0)
    assert est.n_iter_ == 40 and est.stop_reason_ == "max_iter"


@pytest.mark.parametrize("bad", [{"angle_tol": -1.0}, {"angle_tol": 200.0},
                                 {"abundance_tol": 2.0}, {"abundance_tol": np.nan},
                                 {"momentum": 1.5}, {"momentum": -0.1}])  # fmt: skip
def test_tolerances_are_checked(problem, bad):
    G, X = problem
    with pytest.raises(ValueError, match=next(iter(bad))):
        SmartNMF(G, 3, shape_2d=SHAPE, progress=False, **bad).fit(X)
