"""Sums of compact counts over blocks of pixels, compiled (the binned counts of the start and of
the coarse levels, issue 18).

The sparse product ``A @ to_csr(c)`` (A: blocks × pixels, ones) that it replaces converted the
counts to float64 and the indices to int32 first, then built the product's rows entry by entry;
here every nonzero is added once into a dense (blocks × channels) table, read back as CSR (by
SciPy). The sums are those of the product exactly (integers summed in float64; for float counts
the order of the additions over a block's pixels is the pixels' order in both).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from esmpy_hs.nmf._data import CompactCounts
from esmpy_hs.nmf._init import to_csr

#: the dense table is used while blocks × channels is at most this many times the chunk's
#: nonzeros (and ≤ MAX_TABLE entries); otherwise the sparse product (few counts per block)
TABLE_RATIO = 4.0
MAX_TABLE = 1 << 26
#: False: always the sparse product (the path before; for the benchmark's baseline)
COMPILED = True


@njit(cache=True)
def _add_into(indptr, indices, counts, local, out):  # pragma: no cover - compiled
    for p in range(local.size):
        b = local[p]
        if b < 0:
            continue
        row = out[b]
        for q in range(indptr[p], indptr[p + 1]):
            row[indices[q]] += counts[q]


def table_fits(n_blocks: int, c: CompactCounts) -> bool:
    """Whether the dense table is used for ``n_blocks`` blocks of ``c``."""
    if not COMPILED or c.dense is not None or c.counts is None:
        return False
    size = n_blocks * c.n_channels
    return size <= MAX_TABLE and size <= TABLE_RATIO * max(int(c.counts.size), 1)


def sum_blocks(c: CompactCounts, local: np.ndarray, n_blocks: int) -> sp.csr_array:
    """(n_blocks × channels) CSR, float64: the counts of the pixels of each block summed
    (``local``: the block of every pixel of ``c``, in ``0 … n_blocks − 1``, or −1 for none);
    sorted indices, no explicit zeros. Call only where :func:`table_fits`."""
    out = np.zeros((n_blocks, c.n_channels))
    _add_into(c.indptr, c.indices, c.counts, np.ascontiguousarray(local, dtype=np.int64), out)
    return sp.csr_array(out)  # sorted indices, no explicit zeros


def block_sums(c: CompactCounts, blocks: np.ndarray) -> tuple[np.ndarray, sp.csr_array]:
    """Per-block sums of the counts ``c``: ``(block ids, CSR of their sums)`` (float64,
    sorted indices), one id per pixel in ``blocks``, pixels of block ``-1`` left out. One
    compiled pass into a dense table where :func:`table_fits`, else the sparse product."""
    inside = np.flatnonzero(blocks >= 0)
    if inside.size == 0:
        return np.zeros(0, dtype=np.int64), sp.csr_array((0, c.n_channels))
    ids, inv = np.unique(blocks[inside], return_inverse=True)
    if table_fits(ids.size, c):  # one compiled pass into a dense table (identical sums)
        local = np.full(c.n_pixels, -1, dtype=np.int64)
        local[inside] = inv
        return ids, sum_blocks(c, local, ids.size)
    A = sp.csr_array((np.ones(inside.size), (inv, inside)), shape=(ids.size, c.n_pixels))
    part = sp.csr_array(A @ to_csr(c))
    part.sum_duplicates()
    part.sort_indices()
    return ids, part
