"""One fit path: parameters checked before any data, the plan reused by score, no dask when
the data are in memory, scikit-learn's cloning conventions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone

from esmpy_hs.nmf import SmartNMF
from esmpy_hs.nmf._plan import default_lambda

from .conftest import synthetic

SHAPE = (8, 8)


@pytest.fixture
def problem(rng):
    G, W, H = synthetic(rng, n=60, shape=SHAPE, k=2, n_peaks=6)
    return G, rng.poisson(40 * (G @ W @ H).T)


@pytest.mark.parametrize("lam", [None, 0.0, 0.7])
@pytest.mark.parametrize("grid", [True, False])
def test_score_is_minus_the_objective_of_the_fit(problem, lam, grid):
    G, X = problem
    if lam and not grid:
        return  # λ > 0 needs the grid (refused: tested in test_validation)
    est = SmartNMF(G, 2, lambda_L=lam, shape_2d=SHAPE if grid else None, max_iter=20, tol=0,
                   progress=False)  # fmt: skip
    est.fit(X)
    assert -est.score(X) == pytest.approx(est.reconstruction_err_, rel=1e-12)
    if lam is None and grid:
        assert est.lambda_L_ == pytest.approx(default_lambda(est.scale_))


def test_score_of_the_issue_example(rng):
    # the case where score and fit used to disagree (λ from the dose vs λ = 1 in score)
    G, W, H = synthetic(rng, n=60, shape=SHAPE, k=2, n_peaks=6)
    X = rng.poisson(30 * (G @ W @ H).T)
    est = SmartNMF(None, 2, shape_2d=SHAPE, max_iter=20, tol=0, progress=False).fit(X)
    assert est.lambda_L_ != 1.0
    assert -est.score(X) == pytest.approx(est.reconstruction_err_, rel=1e-12)


class _CountingArray:
    """An array-like that counts how often its values are read (a stand-in for a file)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.reads = 0
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        self.reads += 1
        return self.data[key]


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"mu": -1.0}, "mu must be"),
        ({"n_components": 0}, "n_components must be"),
        ({"lambda_L": 2.0, "shape_2d": None}, "needs the pixel grid"),
        ({"shape_2d": (7, 7)}, "holds 49 pixels"),
        ({"tol": float("nan")}, "tol must be"),
        ({"init": "kmeans"}, "init must be"),
        ({"callback": 3}, "callback must be"),
    ],
)
def test_lazy_fit_with_a_bad_parameter_reads_no_chunk(problem, bad, match):
    da = pytest.importorskip("dask.array")
    G, X = problem
    source = _CountingArray(X.astype(np.uint16))
    Xd = da.from_array(source, chunks=(16, -1), asarray=False)
    source.reads = 0  # dask reads an empty slice for its meta data when wrapping the array
    params = {"shape_2d": SHAPE, "progress": False, "max_iter": 3, **bad}
    k = params.pop("n_components", 2)
    with pytest.raises(ValueError, match=match):
        SmartNMF(G, k, **params).fit_transform(Xd, client=False)
    assert source.reads == 0
    # the counter works: a good fit reads every chunk
    SmartNMF(G, 2, shape_2d=SHAPE, progress=False, max_iter=3).fit_transform(Xd, client=False)
    assert source.reads >= 4


def test_in_memory_fit_without_dask(problem, tmp_path):
    G, X = problem
    np.savez(tmp_path / "p.npz", G=G, X=X)
    code = textwrap.dedent(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "dask" or name.startswith("dask."):
                    raise ImportError("dask is blocked in this test")
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        from esmpy_hs.nmf import SmartNMF

        d = np.load({str(tmp_path / "p.npz")!r})
        est = SmartNMF(d["G"], 2, shape_2d={SHAPE}, max_iter=30, progress=False).fit(d["X"])
        assert est.n_iter_ > 0 and np.all(np.isfinite(est.W_))
        assert not any(m == "dask" or m.startswith("dask.") for m in sys.modules), "dask loaded"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_sklearn_clone_and_params_round_trip(problem):
    G, X = problem
    est = SmartNMF(G, 2, shape_2d=SHAPE, mu=0.02, lambda_L=0.3, max_iter=25, progress=False)
    twin = clone(est)
    assert twin is not est
    p1, p2 = est.get_params(), twin.get_params()
    assert set(p1) == set(p2)
    for name, value in p1.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, p2[name])
        else:
            assert value == p2[name], name
    other = SmartNMF().set_params(**p1)
    assert other.get_params().keys() == p1.keys()
    a, b = est.fit(X), twin.fit(X)
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(a.H_, b.H_)
    # refitting the same estimator gives the same result (no state leaks between fits)
    W_first = a.W_.copy()
    a.fit(X)
    np.testing.assert_array_equal(a.W_, W_first)
    assert not hasattr(clone(a), "W_")
