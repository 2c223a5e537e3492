"""Bad input raises ValueError with the offending shapes/values; degenerate data stay finite."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from esmpy_hs.nmf import SmartNMF

from .conftest import peaks_G


def _est(G=None, k=3, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("max_iter", 5)
    return SmartNMF(G, k, **kw)


@pytest.fixture
def X(rng):
    return rng.poisson(3.0, size=(20, 30))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (-1, "negative"),
        (np.nan, "non-finite"),
        (np.inf, "non-finite"),
    ],
)
@pytest.mark.parametrize("sparse", [False, True])
def test_bad_values_in_X(X, bad, match, sparse):
    Xb = X.astype(float)
    Xb[3, 4] = bad
    with pytest.raises(ValueError, match=match):
        _est().fit(sp.csr_array(Xb) if sparse else Xb)


def test_X_shape_errors(X):
    with pytest.raises(ValueError, match=r"2-D.*\(2, 3, 4\)"):
        _est().fit(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="no counts"):
        _est().fit(np.zeros((5, 6)))


def test_G_errors(X):
    G = peaks_G(30, 5)
    with pytest.raises(ValueError, match=r"\(29, 7\).*30 channels"):
        _est(G[:-1]).fit(X)
    Gn = G.copy()
    Gn[0, 0] = -0.1
    with pytest.raises(ValueError, match="negative"):
        _est(Gn).fit(X)
    with pytest.raises(ValueError, match=r"\(3, 30, m\).*\(2, 30, 7\)"):
        _est(np.stack([G] * 2), k=3).fit(X)
    with pytest.raises(ValueError, match="columns of G"):
        _est(G[:, :2], k=3).fit(X)


def test_k_too_large(X):
    with pytest.raises(ValueError, match=r"n_components=21.*20 pixels and 30 channels"):
        _est(k=21).fit(X)
    with pytest.raises(ValueError, match="positive integer"):
        _est(k=0).fit(X)


def test_parameter_errors(X):
    with pytest.raises(ValueError, match="needs the pixel grid"):
        _est(lambda_L=1.0).fit(X)
    with pytest.raises(ValueError, match=r"shape_2d=\(4, 4\) holds 16 pixels but the data have 20"):
        _est(lambda_L=1.0, shape_2d=(4, 4)).fit(X)
    with pytest.raises(ValueError, match="simplex"):
        _est(simplex="X").fit(X)
    with pytest.raises(ValueError, match="mu"):
        _est(mu=[0.1, 0.2]).fit(X)
    with pytest.raises(ValueError, match=r"fixed_W must have shape \(30, 3\)"):
        _est(fixed_W=np.zeros((3, 3))).fit(X)
    with pytest.raises(ValueError, match=r"fixed_H must have shape \(3, 20\)"):
        _est(fixed_H=np.zeros((3, 3))).fit(X)
    fh = np.full((3, 20), np.nan)
    fh[:, 0] = 0.8
    with pytest.raises(ValueError, match="H simplex"):
        _est(fixed_H=fh).fit(X)
    fw = np.full((30, 3), np.nan)
    fw[:2, 0] = 0.6
    with pytest.raises(ValueError, match="W simplex"):
        _est(fixed_W=fw, simplex="W").fit(X)
    with pytest.raises(ValueError, match="init"):
        _est(init="nope").fit(X)
    with pytest.raises(ValueError, match="invalid parameter"):
        _est().set_params(foo=1)


def test_lambda_default_depends_on_grid(X):
    # None → 1 with a grid (runs), 0 without (runs; no silent identity Laplacian)
    _est(shape_2d=(4, 5)).fit(X)
    _est().fit(X)


@pytest.mark.parametrize("simplex", ["H", "W", None])
def test_zero_pixels_and_channels_give_no_nan(X, simplex):
    Xz = X.copy()
    Xz[:5] = 0  # empty pixels
    Xz[:, :4] = 0  # empty channels
    G = peaks_G(30, 5)
    G[:2] = 0.0  # channels with no model at all
    for g in (None, G):
        est = _est(g, lambda_L=0.5, mu=0.1, shape_2d=(4, 5), simplex=simplex, max_iter=30)
        H = est.fit_transform(sp.csr_array(Xz))
        assert np.all(np.isfinite(H)) and np.all(np.isfinite(est.components_))
        assert np.all(np.isfinite(est.loss_history_))


def test_input_not_modified(X):
    Xf = X.astype(np.float64)
    Xs = sp.csr_array(Xf)
    before = Xf.copy()
    data_before = Xs.data.copy()
    _est(lambda_L=0.5, shape_2d=(4, 5)).fit(Xf)
    _est(lambda_L=0.5, shape_2d=(4, 5)).fit(Xs)
    np.testing.assert_array_equal(Xf, before)
    np.testing.assert_array_equal(Xs.data, data_before)
