"""The fit loops run with one BLAS thread (esmpy_hs.nmf._blas) and give the thread count back."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF, _blas

from .conftest import synthetic

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> list[int]:
    return [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]


def _fit_seeing_threads(rng, enabled: bool) -> tuple[list[list[int]], np.ndarray]:
    G, W, H = synthetic(rng, n=80, shape=(8, 8), k=2, n_peaks=6)
    X = rng.poisson(200 * (G @ W @ H).T)
    seen: list[list[int]] = []

    def cb(est, it, W, H):
        seen.append(_blas_threads())

    old = _blas.ENABLED
    _blas.ENABLED = enabled
    try:
        est = SmartNMF(G, 2, shape_2d=(8, 8), max_iter=6, tol=0.0, callback=cb, progress=False)
        est.fit(X)
    finally:
        _blas.ENABLED = old
    return seen, est.components_


def test_one_blas_thread_inside_the_loop_and_restored_after():
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        if not before or max(before) < 2:
            pytest.skip("no BLAS library with threads to limit")
        seen, comp_on = _fit_seeing_threads(np.random.default_rng(3), True)
        assert seen and all(max(s) == 1 for s in seen)
        assert _blas_threads() == before
        seen_off, comp_off = _fit_seeing_threads(np.random.default_rng(3), False)
        assert all(s == before for s in seen_off)
    # the thread count of thin products does not change the answer beyond rounding
    np.testing.assert_allclose(comp_on, comp_off, rtol=1e-12)


def test_nested_uses_set_the_limit_once():
    with _blas.one_blas_thread():
        inner = _blas._STATE["controller"]
        with _blas.one_blas_thread():
            assert _blas._STATE["depth"] == 2
        assert _blas._STATE["depth"] == 1
        assert _blas._STATE["controller"] is inner
    assert _blas._STATE["depth"] == 0


def test_ctrl_c_during_the_library_look_up_is_not_lost():
    """threadpoolctl looks the libraries up through a C callback, where a KeyboardInterrupt is
    printed and dropped; the look-up holds SIGINT back and raises it after."""
    import ctypes
    import signal

    done = []

    def in_callback():
        signal.raise_signal(signal.SIGINT)  # a Ctrl-C arriving inside the C callback
        done.append("callback")

    def factory():
        ctypes.CFUNCTYPE(None)(in_callback)()
        done.append("factory")
        return "controller"

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own
    try:
        with pytest.raises(KeyboardInterrupt):
            _blas._look_up(factory)
        assert done == ["callback", "factory"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
