"""LazyEDSespm.decomposition(algorithm="smart_nmf") fits chunk by chunk, as the eager signal."""

from __future__ import annotations

import h5py
import hyperspy.api as hs
import numpy as np
import pytest

from esmpy_hs.signals import _lazy
from esmpy_hs.signals.eds_espm import EDSespm, LazyEDSespm
from tests.signals.test_smart_nmf import make_map

from .conftest import rel

TOL = 1e-6
SHAPE = (26, 22)
KW = dict(output_dimension=3, lambda_L=1.0, mu=0.01, epsilon_reg=0.1, max_iter=50, tol=0,
          print_info=False)  # fmt: skip


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Keep the tiny test maps in several chunks (no merging of small row chunks)."""
    monkeypatch.setattr(_lazy, "MIN_CHUNK_PIXELS", 0)


@pytest.fixture(scope="module")
def eager_fit():
    s = make_map(shape=SHAPE)
    s.decomposition(algorithm="smart_nmf", **KW)
    return s


def _same(lazy, eager):
    a, b = lazy.learning_results, eager.learning_results
    assert isinstance(a.loadings, np.ndarray) and a.loadings.shape == b.loadings.shape
    assert rel(a.loadings, b.loadings) < TOL
    assert rel(a.factors, b.factors) < TOL
    assert rel(lazy.metadata.SmartNMF.W, eager.metadata.SmartNMF.W) < TOL
    assert a.decomposition_algorithm == "smart_nmf"


@pytest.mark.parametrize("persist", ["memory", "stream"])
def test_lazy_equals_eager(eager_fit, persist):
    sl = make_map(shape=SHAPE).as_lazy()
    sl.data = sl.data.rechunk((7, 5, 300))  # uneven, split along the signal axis too
    assert isinstance(sl, LazyEDSespm)
    est = sl.decomposition(algorithm="smart_nmf", return_info=True, persist=persist, **KW)
    assert est.persist_ == persist and est.n_chunks_ == 4
    assert isinstance(sl, LazyEDSespm)  # still lazy: the data were not computed
    _same(sl, eager_fit)
    q, qe = sl.quantify_phases(), eager_fit.quantify_phases()
    # a map not in memory has its listed elements tested on the summed spectrum only (no pass
    # over each phase's pure pixels): its not-detected flags are a part of the eager fit's,
    # and the fractions that both show agree (the eager fit's flagged amounts are ~1e-11)
    both = np.ones(q.atomic_fractions.shape, dtype=bool)
    for qq in (q, qe):
        for k, name in enumerate(qq.phase_names):
            for el in qq.not_detected.get(name, {}):
                both[qq.elements.index(el), k] = False
    np.testing.assert_allclose(q.atomic_fractions[both], qe.atomic_fractions[both], rtol=1e-6)
    for name, found in q.not_detected.items():
        assert set(found) <= set(qe.not_detected.get(name, {}))
    loadings = sl.get_decomposition_loadings()
    assert loadings.data.shape == (3, *SHAPE)


def test_small_row_chunks_are_merged(monkeypatch):
    monkeypatch.setattr(_lazy, "MIN_CHUNK_PIXELS", 100)
    sl = make_map(shape=SHAPE).as_lazy()
    sl.data = sl.data.rechunk((2, -1, -1))
    est = sl.decomposition(algorithm="smart_nmf", return_info=True,
                           **{**KW, "max_iter": 2})  # fmt: skip
    assert est.n_chunks_ == 5  # 13 chunks of 2 rows (44 pixels): 6 + 6 + 6 + 6 + 2 rows


def test_hspy_file_is_never_loaded_whole(eager_fit, tmp_path, monkeypatch):
    fname = tmp_path / "map.hspy"
    make_map(shape=SHAPE).save(fname, chunks=(5, 11, 1000))
    sl = hs.load(fname, lazy=True)
    assert isinstance(sl, LazyEDSespm)
    reads = _reads(monkeypatch, lambda: sl.decomposition(algorithm="smart_nmf", persist="stream",
                                                         **KW))  # fmt: skip
    total = int(np.prod(sl.data.shape))
    assert reads and max(reads) <= 5 * 11 * 1000 < total // 4
    _same(sl, eager_fit)
    # results survive a save/load round trip of the lazy signal
    out = tmp_path / "fitted.hspy"
    sl.save(out)
    back = hs.load(out, lazy=True)
    np.testing.assert_allclose(back.metadata.SmartNMF.W, sl.metadata.SmartNMF.W)
    assert isinstance(back, LazyEDSespm)


def test_absorption_refresh_matches(tmp_path):
    kw = dict(output_dimension=3, max_iter=25, tol=0, print_info=False)
    eager = make_map(dose=200, shape=(12, 12))
    lazy = make_map(dose=200, shape=(12, 12))
    for s in (eager, lazy):
        s.metadata.set_item("Sample.thickness", "100 nm")
        s.metadata.set_item("Sample.density", 4.5)
    eager.decomposition(algorithm="smart_nmf", **kw)
    lazy = lazy.as_lazy()
    lazy.data = lazy.data.rechunk((5, -1, -1))
    lazy.decomposition(algorithm="smart_nmf", **kw)
    _same(lazy, eager)


def test_lazy_options_need_a_lazy_signal():
    s = make_map(shape=(8, 8))
    assert isinstance(s, EDSespm) and not isinstance(s, LazyEDSespm)
    with pytest.raises(ValueError, match="lazy signals only"):
        s.decomposition(algorithm="smart_nmf", output_dimension=2, persist="memory",
                        print_info=False)  # fmt: skip


def _bytes_read(monkeypatch, call):
    """Values read from the HDF5 file of a lazy map while ``call()`` runs."""
    return sum(_reads(monkeypatch, call))


def _reads(monkeypatch, call):
    """The size of each read of a 3-D HDF5 dataset while ``call()`` runs."""
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        out = original(self, key)
        if self.ndim == 3:
            reads.append(np.size(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    try:
        call()
    finally:
        monkeypatch.setattr(h5py.Dataset, "__getitem__", original)
    return reads


def test_file_is_read_once_for_the_summed_spectrum_and_the_fit(eager_fit, tmp_path,
                                                              monkeypatch):  # fmt: skip
    """The calibration's summed spectrum comes from the read that converts the chunks for the
    fit: every value of the file is read exactly once (before: a dask sum of the whole map,
    then the fitted channels again for the fit), and the fit is the eager one."""
    from esmpy_hs.signals import _calibration

    fname = tmp_path / "map.hspy"
    make_map(shape=SHAPE).save(fname, chunks=(5, 11, 1000))
    kw = {**KW, "persist": "memory"}
    sums = []
    real = _calibration.calibrate_detector

    def spy(axis, summed, *args, **kwargs):
        sums.append(np.array(summed))
        return real(axis, summed, *args, **kwargs)

    monkeypatch.setattr(_calibration, "calibrate_detector", spy)
    sl = hs.load(fname, lazy=True)
    total = int(np.prod(sl.data.shape))
    assert _bytes_read(monkeypatch, lambda: sl.decomposition(algorithm="smart_nmf", **kw)) \
        == total  # fmt: skip
    _same(sl, eager_fit)
    # the summed spectrum of the single read is exactly the dask sum of the map
    dask_sum = np.asarray(sl.data.sum(axis=(0, 1)).compute(), dtype=np.float64)
    assert np.array_equal(sums[0], dask_sum)
    # the counter works: with the summed spectrum read apart, the map is read more than once
    monkeypatch.setattr(_lazy, "ONE_READ", False)
    old = hs.load(fname, lazy=True)
    assert _bytes_read(monkeypatch, lambda: old.decomposition(algorithm="smart_nmf", **kw)) \
        > total  # fmt: skip
    assert np.array_equal(sums[1], sums[0])
    _same(old, eager_fit)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_auto_persist_estimate_does_not_read_the_first_chunk_again(eager_fit, tmp_path,
                                                                   monkeypatch, mode):  # fmt: skip
    """``persist="auto"`` estimates the compact size from the first chunk, converted once: the
    engine keeps that conversion as its first read, so the file is still read exactly once
    (before: the first chunk twice), in either mode the estimate picks, and the fit is the
    eager one."""
    from esmpy_hs.nmf import _chunked

    fname = tmp_path / "map.hspy"
    make_map(shape=SHAPE).save(fname, chunks=(5, 11, 1000))
    if mode == "stream":  # the estimate picks streaming when almost no memory is allowed
        monkeypatch.setattr(_chunked, "MEMORY_FRACTION", 1e-12)
    kw = {**KW, "persist": "auto"}
    sl = hs.load(fname, lazy=True)
    total = int(np.prod(sl.data.shape))
    out = {}

    def fit():
        out["est"] = sl.decomposition(algorithm="smart_nmf", return_info=True, **kw)

    if mode == "memory":
        assert _bytes_read(monkeypatch, fit) == total
    else:  # streaming reads the fitted channels again at every pass; the first read once
        fit()
    assert out["est"].persist_ == mode
    _same(sl, eager_fit)
    # the counter sees the second conversion of the first chunk when it is not kept
    monkeypatch.setattr(_chunked, "REUSE_FIRST_CHUNK", False)
    if mode == "memory":
        old = hs.load(fname, lazy=True)
        assert _bytes_read(monkeypatch,
                           lambda: old.decomposition(algorithm="smart_nmf", **kw)) > total
