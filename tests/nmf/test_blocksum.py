"""The compiled block sums (``nmf._blocksum``) give the sparse product's CSR exactly."""

from __future__ import annotations

import numpy as np
import pytest

from esmpy_hs.nmf import _blocksum
from esmpy_hs.nmf._blocksum import block_sums
from esmpy_hs.nmf._data import as_compact


def _same_csr(a, b) -> None:
    assert a.shape == b.shape
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert a.data.dtype == b.data.dtype == np.float64
    assert np.array_equal(a.data, b.data)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_binned_table_equals_the_sparse_product(dtype, monkeypatch):
    rng = np.random.default_rng(5)
    Y = rng.poisson(0.15, size=(600, 90)).astype(dtype)
    if dtype == np.float32:
        Y *= rng.random(Y.shape).astype(np.float32)  # non-integer counts: order matters
    Y[17] = 0  # an empty pixel
    c = as_compact(Y, float_dtype=np.float64)
    blocks = rng.integers(-1, 40, size=600)  # −1: pixels outside every full block
    blocks[blocks == 7] = -1  # a block id missing
    assert _blocksum.table_fits(39, c)
    ids, fast = block_sums(c, blocks)
    monkeypatch.setattr(_blocksum, "COMPILED", False)
    ids0, slow = block_sums(c, blocks)
    assert np.array_equal(ids, ids0)
    _same_csr(fast, slow)
    # and the sums are the plain ones
    want = np.stack([Y[blocks == i].sum(axis=0, dtype=np.float64) for i in ids])
    assert np.allclose(fast.toarray(), want, rtol=1e-12, atol=0)


def test_table_not_used_when_it_would_dwarf_the_counts():
    rng = np.random.default_rng(6)
    Y = (rng.random((400, 500)) < 0.002).astype(np.uint16)  # ≈ 400 nonzeros
    c = as_compact(Y, float_dtype=np.float64)
    assert not _blocksum.table_fits(400, c)  # one block per pixel: 200 000 entries
    ids, part = block_sums(c, np.arange(400))  # the sparse product
    assert np.array_equal(part.toarray(), Y.astype(np.float64)[ids])
