"""The chunked (dask) fit gives the iterates of the in-memory fit (no HyperSpy)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF, _chunked, fit_chunked

from .conftest import CASES, CHUNKS, rel, settings

TOL = 1e-6


@pytest.fixture(scope="module")
def eager(problem):
    G, Y = problem
    out = {}
    for case in CASES:
        est = SmartNMF(G, 3, **settings(case))
        out[case] = (est, est.fit_transform(Y))
    return out


@pytest.mark.parametrize("persist", ["memory", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_iterates_as_in_memory(problem, eager, case, persist):
    G, Y = problem
    ref, H_ref = eager[case]
    est = SmartNMF(G, 3, **settings(case))
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), persist=persist, client=False)
    assert isinstance(H, np.ndarray)
    assert est.persist_ == persist and est.n_chunks_ == len(CHUNKS)
    assert est.n_iter_ == ref.n_iter_ == 50
    assert rel(H, H_ref) < TOL
    assert rel(est.W_, ref.W_) < TOL
    assert rel(est.components_, ref.components_) < TOL
    np.testing.assert_allclose(est.loss_history_, ref.loss_history_, rtol=1e-9)
    assert est.loss_iterations_ == ref.loss_iterations_


def test_chunks_split_along_channels_and_channels_first(problem, eager):
    G, Y = problem
    ref, H_ref = eager["H-simplex"]
    X = da.from_array(np.ascontiguousarray(Y.T), chunks=(50, (500, 520)))  # channels × pixels
    est = SmartNMF(G, 3, **settings("H-simplex", channels_first=True))
    H = est.fit_transform(X, client=False)
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL


@pytest.mark.parametrize("init", ["random", "explicit"])
def test_other_starts(problem, init):
    G, Y = problem
    kw = settings("H-simplex", max_iter=20, random_state=3)
    fit = {}
    if init == "explicit":
        rng = np.random.default_rng(0)
        fit = dict(W=rng.uniform(0.1, 1, (G.shape[1], 3)) * 50,
                   H=rng.dirichlet(np.ones(3), Y.shape[0]).T)  # fmt: skip
    kw["init"] = "random"
    ref = SmartNMF(G, 3, **kw)
    H_ref = ref.fit_transform(Y, **fit)
    est = SmartNMF(G, 3, **kw)
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), client=False, **fit)
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL


def test_no_binning_start_and_float_counts(problem):
    """A chain without binning (all counts gathered for the start) and float input."""
    G, Y = problem
    Yf = Y[:200].astype(np.float32)
    kw = dict(shape_2d=(200,), lambda_L=0.3, max_iter=15, tol=0, progress=False)
    ref = SmartNMF(G, 3, **kw)
    H_ref = ref.fit_transform(Yf)
    est = fit_chunked(da.from_array(Yf, chunks=((64, 70, 66), -1)), G, 3, client=False, **kw)
    assert rel(est.H_, H_ref.T) < TOL and rel(est.W_, ref.W_) < TOL


def test_callback_replacing_G_and_convergence(problem):
    """The absorption-refresh path: G replaced every 5 iterations; tol stops both alike."""
    G, Y = problem

    def cb(est, it, W, H):
        return G * (1.0 + 0.01 * it / 5) if it % 5 == 0 else None

    kw = settings("H-simplex", max_iter=400, tol=1e-6, loss_every=5, callback=cb)
    ref = SmartNMF(G, 3, **kw)
    H_ref = ref.fit_transform(Y)
    est = SmartNMF(G, 3, **kw)
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), client=False)
    assert est.stop_reason_ == ref.stop_reason_
    assert est.n_iter_ == ref.n_iter_
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL and rel(est.G_, ref.G_) < TOL


def test_spectra_from_blocks(problem):
    """W from the binned start, held: the chunked fit re-expresses it on a new G alike."""
    G, Y = problem

    def cb(est, it, W, H):
        return G * (1.0 + 0.02 * np.arange(G.shape[1]))[None, :] if it == 10 else None

    kw = settings("H-simplex", max_iter=30, spectra_from="blocks", callback=cb)
    ref = SmartNMF(G, 3, **kw)
    H_ref = ref.fit_transform(Y)
    est = SmartNMF(G, 3, **kw)
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), client=False)
    assert est.spectra_from_ == ref.spectra_from_ == "blocks"
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL and rel(est.G_, ref.G_) < TOL


def test_keyboard_interrupt_keeps_the_last_iterate(problem):
    G, Y = problem

    def cb(est, it, W, H):
        if it == 7:
            raise KeyboardInterrupt

    # the start's extrapolation given, so that both fits start alike (by default the start
    # leaves the move away from the dominant phase to the final move: _init.anchor_move)
    est = SmartNMF(G, 3, **settings("H-simplex", callback=cb, init_extrapolation=0.5))
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), client=False)
    # an interrupted fit ends before the minor phases are moved to their bound
    ref = SmartNMF(G, 3, **settings("H-simplex", max_iter=7, final_extrapolation=0.0,
                                    init_extrapolation=0.5))  # fmt: skip
    H_ref = ref.fit_transform(Y)
    assert est.stop_reason_ == "interrupted" and est.n_iter_ == 7
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL


def test_auto_persist_streams_when_memory_is_short(problem, monkeypatch):
    G, Y = problem
    X = da.from_array(Y, chunks=(CHUNKS, -1))
    est = SmartNMF(G, 3, **settings("H-simplex", max_iter=3))
    est.fit_transform(X, client=False)
    assert est.persist_ == "memory" and est.compact_bytes_ > 0
    monkeypatch.setattr(_chunked, "MEMORY_FRACTION", 1e-12)
    est.fit_transform(X, client=False)
    assert est.persist_ == "stream"


def test_large_blocks_are_split(problem, monkeypatch):
    G, Y = problem
    monkeypatch.setattr(_chunked, "MAX_CHUNK_BYTES", 120 * 2 * 300)  # 300 pixels of uint16
    est = SmartNMF(G, 3, **settings("H-simplex", max_iter=2))
    est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), client=False)
    assert est.n_chunks_ == 1 + 1 + 2 + 2


def test_errors(problem):
    G, Y = problem
    X = da.from_array(Y, chunks=(CHUNKS, -1))
    with pytest.raises(ValueError, match="persist"):
        SmartNMF(G, 3).fit_transform(X, persist="disk")
    bad = Y.astype(np.float64)
    bad[700, 3] = -1
    with pytest.raises(ValueError, match="negative"):
        SmartNMF(G, 3, progress=False).fit_transform(da.from_array(bad, chunks=(CHUNKS, -1)))
    with pytest.raises(ValueError, match="2-D"):
        SmartNMF(G, 3).fit_transform(da.zeros((4, 5, 6), chunks=2))
    with pytest.raises(ValueError, match="no counts"):
        SmartNMF(G, 3, progress=False).fit_transform(da.zeros((50, 120), chunks=(20, -1)))
    with pytest.raises(TypeError, match="dask array"):
        fit_chunked(Y, G, 3)


@pytest.mark.parametrize("persist", ["memory", "stream"])
def test_source_with_columns_sums_every_channel_in_its_one_read(problem, eager, persist):
    """A source opened on every channel fits the columns [c0, c1) only, as a source of those
    columns, and its first read gives the exact summed spectrum of every channel."""
    G, Y = problem
    ref, H_ref = eager["H-simplex"]
    rng = np.random.default_rng(3)
    pad = lambda n: rng.poisson(5.0, size=(Y.shape[0], n)).astype(Y.dtype)  # noqa: E731
    full = np.hstack([pad(7), Y, pad(4)])  # 7 channels below the fitted ones, 4 above
    c0, c1 = 7, 7 + Y.shape[1]
    X = _chunked.prepare_array(da.from_array(full, chunks=(CHUNKS, -1)))
    source = _chunked.ChunkedSource(X, np.float64, persist, False, columns=(c0, c1))
    assert np.array_equal(source.column_sums, full.sum(axis=0).astype(np.float64))
    assert source.stats.n_channels == Y.shape[1]
    assert np.array_equal(source.stats.channel_sums, Y.sum(axis=0).astype(np.float64))
    est = SmartNMF(G, 3, **settings("H-simplex"))
    H = est.fit_transform(source)
    assert est.persist_ == persist and est.n_iter_ == ref.n_iter_
    assert rel(H, H_ref) < TOL
    assert rel(est.components_, ref.components_) < TOL
    np.testing.assert_allclose(est.loss_history_, ref.loss_history_, rtol=1e-9)
    with pytest.raises(ValueError, match="columns must be"):
        _chunked.ChunkedSource(X, np.float64, persist, False, columns=(5, full.shape[1] + 1))
    with pytest.raises(ValueError, match="dtype"):
        SmartNMF(G, 3, **settings("H-simplex", dtype="float32")).fit_transform(
            _chunked.ChunkedSource(X, np.float64, persist, False, columns=(c0, c1)))
