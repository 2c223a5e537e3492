"""The absorption refresh leaves G alone once it stops moving (``G_RTOL``)."""

from __future__ import annotations

import numpy as np

from esmpy_hs.signals._decomposition import G_RTOL, _AbsorptionRefresh, _ChainedCallback


class _Stub:
    """A model and priors whose per-phase G scales a fixed matrix by 1 + W[0, j]."""

    base = np.arange(1.0, 13.0).reshape(4, 3)

    def G_for_phases(self, W):
        return np.stack([self.base * (1.0 + W[0, j]) for j in range(W.shape[1])])

    def true_W(self, W):
        return W

    def phase_G(self, G3):
        return G3


def _refresher(every: int = 10) -> _AbsorptionRefresh:
    stub = _Stub()
    return _AbsorptionRefresh(stub, stub, every)


def test_refresh_skips_a_G_that_did_not_move():
    r = _refresher()
    W = np.full((3, 2), 0.5)
    G0 = r.start(W)
    assert r(None, 5, W, None) is None  # not a refresh iteration
    assert r(None, 10, W, None) is None and r.skipped == 1  # same G: left alone
    # a change below G_RTOL of the column's largest entry is left alone too
    assert r(None, 20, W + 0.5 * G_RTOL, None) is None
    W2 = W.copy()
    W2[0, 1] += 10 * G_RTOL
    G = r(None, 30, W2, None)
    assert G is not None and not np.allclose(G, G0, rtol=0, atol=0)
    # the comparison is with the G in use, so small moves cannot add up unseen
    assert r(None, 40, W2, None) is None
    W3 = W2.copy()
    W3[0, 0] += 10 * G_RTOL
    assert r(None, 50, W3, None) is not None


def test_a_G_of_the_user_makes_the_next_refresh_apply():
    r = _refresher()
    W = np.full((3, 2), 0.5)
    r.start(W)
    user_G = np.zeros((2, 4, 3))
    chained = _ChainedCallback(lambda est, it, W, H: user_G if it == 10 else None, r)
    assert chained(None, 10, W, None) is user_G  # the refresher saw no change: the user's G
    assert chained(None, 20, W, None) is not None  # then the physics G comes back
