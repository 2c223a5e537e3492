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
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        out = original(self, key)
        if self.ndim == 3:
            reads.append(np.size(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    sl.decomposition(algorithm="smart_nmf", persist="stream", **KW)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", original)
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


def test_summed_spectrum_is_read_once(monkeypatch):
    """The calibration and the model check share one sum over a lazy map (a read of the file
    each at scale)."""
    from esmpy_hs.signals import _calibration

    calls = []
    real = _calibration.summed_spectrum

    def counted(signal):
        calls.append(bool(getattr(signal, "_lazy", False)))
        return real(signal)

    monkeypatch.setattr(_calibration, "summed_spectrum", counted)
    sl = make_map(shape=SHAPE).as_lazy()
    sl.decomposition(algorithm="smart_nmf", **{**KW, "max_iter": 2})
    assert calls == [True]
