"""The chunked fit on a dask.distributed LocalCluster (two worker processes)."""

from __future__ import annotations

import time

import dask.array as da
import numpy as np
import pytest

from esmpy_hs.nmf import SmartNMF

from .conftest import CHUNKS, rel, settings

distributed = pytest.importorskip("distributed")

TOL = 1e-6


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def eager(problem):
    G, Y = problem
    est = SmartNMF(G, 3, **settings("H-simplex"))
    return est, est.fit_transform(Y)


@pytest.mark.parametrize("persist", ["memory", "stream"])
def test_same_result_on_a_local_cluster(problem, eager, client, persist):
    G, Y = problem
    if persist == "memory":
        ref, H_ref = eager  # 50 iterations
    else:  # a shorter run: every pass re-sends the chunks
        ref = SmartNMF(G, 3, **settings("H-simplex", max_iter=15))
        H_ref = ref.fit_transform(Y)
    est = SmartNMF(G, 3, **settings("H-simplex", max_iter=ref.max_iter))
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), persist=persist, client=client)
    assert est.persist_ == persist
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL
    np.testing.assert_allclose(est.loss_history_, ref.loss_history_, rtol=1e-9)


def test_open_client_is_detected(problem, eager, client):
    """client=None picks up the default client: the chunks live on both workers."""
    G, Y = problem
    ref, H_ref = eager
    est = SmartNMF(G, 3, **settings("H-simplex"))
    H = est.fit_transform(da.from_array(Y, chunks=(CHUNKS, -1)), persist="memory")
    assert rel(H, H_ref) < TOL and rel(est.W_, ref.W_) < TOL
    # the fit ran tasks on the workers (the chunks were released afterwards)
    logs = client.run(lambda dask_worker: len(dask_worker.state.log))
    assert len(logs) == 2 and all(n > 0 for n in logs.values())
    for _ in range(100):  # releases are asynchronous
        if not client.who_has():
            break
        time.sleep(0.05)
    assert not client.who_has()  # nothing left on the cluster


def test_lazy_signal_on_the_cluster(client, monkeypatch):
    from esmpy_hs.signals import _lazy
    from tests.signals.test_smart_nmf import make_map

    monkeypatch.setattr(_lazy, "MIN_CHUNK_PIXELS", 0)
    kw = dict(output_dimension=3, lambda_L=1.0, mu=0.01, epsilon_reg=0.1, max_iter=20, tol=0,
              print_info=False)  # fmt: skip
    s = make_map(shape=(20, 18))
    s.decomposition(algorithm="smart_nmf", **kw)
    sl = s.as_lazy()
    sl.data = sl.data.rechunk((6, 9, -1))
    est = sl.decomposition(algorithm="smart_nmf", return_info=True, **kw)
    assert est.n_chunks_ == 4
    assert rel(sl.learning_results.loadings, s.learning_results.loadings) < TOL
    assert rel(sl.learning_results.factors, s.learning_results.factors) < TOL
