"""Input validation and the compact count storage used by the kernels.

The solver works on Y (channels × pixels) but stores it *by pixel*: for pixel p, the channel
indices ``indices[indptr[p]:indptr[p+1]]`` and counts ``counts[indptr[p]:indptr[p+1]]`` of its
nonzero entries (CSC of Y, i.e. CSR of the pixels × channels matrix X that HyperSpy hands over).
Channel indices are ``uint16`` when there are at most 65 536 channels, and integer counts are
``uint16`` when they fit, so a 128 × 128 × 1980 map at 300 counts/pixel takes ≈ 16 MB. When more
than half of the entries are nonzero (noiseless or high-dose data) the counts are stored dense,
pixels × channels, and the dense kernel is used instead.

The input array is never modified: everything here copies into new, compact arrays.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: density above which the dense kernel is used
DENSE_THRESHOLD = 0.5
#: pixels converted at a time from a dense input (bounds the temporaries)
_BLOCK = 2048
#: integer inputs of at least this many entries are compacted by compiled code (below it the
#: NumPy steps cost less than the call; the result is the same)
_COMPILED_SIZE = 1 << 22


@dataclass
class CompactCounts:
    """Counts stored by pixel, sparse (``indptr``/``indices``/``counts``) or dense (``dense``).

    Attributes
    ----------
    n_channels, n_pixels : int
        Shape of Y (channels × pixels).
    indptr : ndarray of int64, shape (n_pixels + 1,) or None
        Pixel p's nonzeros are ``indptr[p]:indptr[p+1]``.
    indices : ndarray of uint16 or int32, or None
        Channel index of each nonzero.
    counts : ndarray of uint16 or float, or None
        Value of each nonzero.
    dense : ndarray, shape (n_pixels, n_channels), or None
        Dense storage (uint16 or float), pixel-major.
    total : float
        Σ Y.
    ylogy : float
        Σ Y log Y over the nonzeros (for the Kullback-Leibler constant).
    pixel_sums : ndarray of float64, shape (n_pixels,)
    channel_sums : ndarray of float64, shape (n_channels,)
    """

    n_channels: int
    n_pixels: int
    indptr: np.ndarray | None
    indices: np.ndarray | None
    counts: np.ndarray | None
    dense: np.ndarray | None
    total: float
    ylogy: float
    pixel_sums: np.ndarray
    channel_sums: np.ndarray

    @property
    def is_dense(self) -> bool:
        return self.dense is not None

    @property
    def nnz(self) -> int:
        if self.dense is not None:
            return int(np.count_nonzero(self.dense))
        return int(self.indptr[-1])

    @property
    def nbytes(self) -> int:
        if self.dense is not None:
            return int(self.dense.nbytes)
        return int(self.indptr.nbytes + self.indices.nbytes + self.counts.nbytes)

    def chunk(self, start: int, stop: int) -> tuple:
        """Views on pixels ``start:stop``, in the form the kernels take.

        Returns ``("sparse", indptr_slice, indices, counts)`` (``indptr_slice`` indexes the
        full ``indices``/``counts`` arrays: no copy) or ``("dense", dense[start:stop])``.
        """
        if self.dense is not None:
            return ("dense", self.dense[start:stop])
        return ("sparse", self.indptr[start : stop + 1], self.indices, self.counts)

    def to_dense(self, dtype=np.float64) -> np.ndarray:
        """Y as a dense channels × pixels array (for tests and small problems only)."""
        if self.dense is not None:
            return np.ascontiguousarray(self.dense.T, dtype=dtype)
        Y = np.zeros((self.n_channels, self.n_pixels), dtype=dtype)
        for p in range(self.n_pixels):
            a, b = self.indptr[p], self.indptr[p + 1]
            Y[self.indices[a:b].astype(np.int64), p] = self.counts[a:b]
        return Y


def _count_dtype(values: np.ndarray, float_dtype) -> np.dtype:
    """uint16 for integer-valued counts below 65 536, else the working float type."""
    if values.size == 0:
        return np.dtype(np.uint16)
    if np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.bool_):
        if values.max() <= np.iinfo(np.uint16).max:
            return np.dtype(np.uint16)
        return np.dtype(float_dtype)
    vmax = values.max()
    if vmax <= np.iinfo(np.uint16).max and np.all(values == np.round(values)):
        return np.dtype(np.uint16)
    return np.dtype(float_dtype)


def _check_values(values: np.ndarray, what: str) -> None:
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
        raise ValueError(f"{what} must be numeric, got dtype {values.dtype}")
    if np.iscomplexobj(values):
        raise ValueError(f"{what} must be real, got dtype {values.dtype}")
    if not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"{what} contains {int(bad.sum())} non-finite value(s) (NaN or inf); "
                "the Poisson NMF needs finite, non-negative counts"
            )
    vmin = values.min()
    if vmin < 0:
        raise ValueError(
            f"{what} contains {int((values < 0).sum())} negative value(s) (minimum {vmin!r}); "
            "the Poisson NMF needs non-negative counts"
        )


def is_dask_array(X) -> bool:
    """True for a ``dask.array.Array`` (without importing dask when it is not loaded)."""
    mod = sys.modules.get("dask.array")
    return mod is not None and isinstance(X, mod.Array)


def shape_of(X, *, channels_first: bool = False) -> tuple[int, int]:
    """``(channels, pixels)`` of X without reading its values (a dask array stays lazy).

    Raises
    ------
    ValueError
        When X is not 2-D or has an empty axis.
    """
    shape = getattr(X, "shape", None)
    if shape is None:
        shape = np.shape(X)
    if len(shape) != 2:
        raise ValueError(f"X must be 2-D (pixels × channels), got shape {tuple(shape)}")
    n_pix, n_ch = (shape[1], shape[0]) if channels_first else shape
    _check_pos_shape(n_pix, n_ch, shape)
    return int(n_ch), int(n_pix)


def as_compact(X, *, channels_first: bool = False, float_dtype=np.float64) -> CompactCounts:
    """Validate X and store it compactly by pixel.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix/array, 2-D
        Counts, pixels × channels (HyperSpy's unfolded layout) or, with ``channels_first``,
        channels × pixels.
    channels_first : bool
        Layout switch, see above.
    float_dtype : numpy float dtype
        Type used for non-integer counts.

    Raises
    ------
    ValueError
        Wrong dimensionality, an empty axis, negative, NaN or infinite values.
    """
    float_dtype = np.dtype(float_dtype)
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        Xc = sp.csc_array(X) if channels_first else sp.csr_array(X)
        n_pix, n_ch = (X.shape[1], X.shape[0]) if channels_first else X.shape
        _check_pos_shape(n_pix, n_ch, X.shape)
        _check_values(Xc.data, "X")
        Xc.sum_duplicates()
        Xc.sort_indices()
        data = Xc.data
        keep = data != 0
        indptr = np.asarray(Xc.indptr, dtype=np.int64)
        indices = np.asarray(Xc.indices)
        if not keep.all():
            counts_per = _segment_sums(keep.astype(np.float64), indptr).astype(np.int64)
            indptr = np.concatenate([[0], np.cumsum(counts_per)]).astype(np.int64)
            data = data[keep]
            indices = indices[keep]
        return _finish_sparse(indptr, indices, data, n_ch, n_pix, float_dtype)

    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (pixels × channels), got shape {X.shape}")
    n_pix, n_ch = (X.shape[1], X.shape[0]) if channels_first else X.shape
    _check_pos_shape(n_pix, n_ch, X.shape)
    Xp = X.T if channels_first else X  # pixels × channels view, no copy
    if X.dtype.kind in "iu" and X.size >= _COMPILED_SIZE:
        return _compact_integers(Xp, float_dtype)
    _check_values(X, "X")
    nnz = int(np.count_nonzero(Xp))
    cdt = _count_dtype(Xp, float_dtype)
    if nnz > DENSE_THRESHOLD * n_pix * n_ch:
        return _dense_copy(Xp, cdt)
    idt = np.uint16 if n_ch <= 65536 else np.int32
    indptr = np.zeros(n_pix + 1, dtype=np.int64)
    indices = np.empty(nnz, dtype=idt)
    counts = np.empty(nnz, dtype=cdt)
    pos = 0
    for a in range(0, n_pix, _BLOCK):
        blk = np.asarray(Xp[a : a + _BLOCK])
        rows, cols = np.nonzero(blk)
        vals = blk[rows, cols]
        cnt = np.bincount(rows, minlength=blk.shape[0])
        indptr[a + 1 : a + 1 + blk.shape[0]] = pos + np.cumsum(cnt)
        indices[pos : pos + vals.size] = cols
        counts[pos : pos + vals.size] = vals
        pos += vals.size
    return _finish(indptr, indices, counts, None, n_ch, n_pix)


def _dense_copy(Xp: np.ndarray, cdt) -> CompactCounts:
    """Dense counts of ``dtype`` ``cdt``, copied from the pixels × channels view block by block
    (a conversion of the whole array at once would hold a second full copy)."""
    dense = np.empty(Xp.shape, dtype=cdt)
    for a in range(0, Xp.shape[0], _BLOCK):
        dense[a : a + _BLOCK] = Xp[a : a + _BLOCK]
    return _finish_dense(dense)


def _compact_integers(Xp: np.ndarray, float_dtype) -> CompactCounts:
    """:func:`as_compact` of a large integer array (pixels × channels view) with the compiled
    scan and fill of :mod:`._kernels`: two parallel reads of X instead of five NumPy passes
    (3.7 s → 0.6 s for 512 × 512 × 4096 uint16, see docs/validation.rst)."""
    from esmpy_hs.nmf import _kernels  # numba: imported when needed

    n_pix, n_ch = Xp.shape
    nnz_row = np.empty(n_pix, dtype=np.int64)
    lo = np.empty(n_pix, dtype=np.int64)
    hi = np.empty(n_pix, dtype=np.int64)
    _kernels.scan_rows(Xp, nnz_row, lo, hi)
    if lo.min() < 0:
        _check_values(Xp, "X")  # raises with the count of negative values
    big = hi.max() > np.iinfo(np.uint16).max
    cdt = np.dtype(float_dtype) if big else np.dtype(np.uint16)
    nnz = int(nnz_row.sum())
    if nnz > DENSE_THRESHOLD * n_pix * n_ch:
        return _dense_copy(Xp, cdt)
    idt = np.uint16 if n_ch <= 65536 else np.int32
    indptr = np.zeros(n_pix + 1, dtype=np.int64)
    np.cumsum(nnz_row, out=indptr[1:])
    indices = np.empty(nnz, dtype=idt)
    counts = np.empty(nnz, dtype=cdt)
    _kernels.fill_rows(Xp, indptr, indices, counts)
    return _finish(indptr, indices, counts, None, n_ch, n_pix)


def _segment_sums(v: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Σ of ``v`` over each segment ``indptr[i]:indptr[i+1]`` (empty segments give 0)."""
    n = indptr.size - 1
    seg = np.repeat(np.arange(n), np.diff(indptr))
    return np.bincount(seg, weights=v, minlength=n).astype(np.float64)


def _check_pos_shape(n_pix: int, n_ch: int, shape) -> None:
    if n_pix < 1 or n_ch < 1:
        raise ValueError(f"X must have at least one pixel and one channel, got shape {shape}")


def _finish_sparse(indptr, indices, data, n_ch, n_pix, float_dtype) -> CompactCounts:
    idt = np.uint16 if n_ch <= 65536 else np.int32
    cdt = _count_dtype(data, float_dtype)
    return _finish(indptr, indices.astype(idt), data.astype(cdt), None, n_ch, n_pix)


def _finish_dense(dense: np.ndarray) -> CompactCounts:
    n_pix, n_ch = dense.shape
    return _finish(None, None, None, dense, n_ch, n_pix)


def _finish(indptr, indices, counts, dense, n_ch, n_pix) -> CompactCounts:
    if dense is not None:
        pixel_sums = dense.sum(axis=1, dtype=np.float64)
        channel_sums = dense.sum(axis=0, dtype=np.float64)
        ylogy = 0.0
        for a in range(0, n_pix, _BLOCK):
            v = dense[a : a + _BLOCK].astype(np.float64)
            v = v[v > 0]
            ylogy += float(np.sum(v * np.log(v)))
    else:
        v = counts.astype(np.float64)
        pixel_sums = _segment_sums(v, indptr)
        channel_sums = np.bincount(indices, weights=v, minlength=n_ch).astype(np.float64)
        ylogy = float(np.sum(v * np.log(v))) if v.size else 0.0
    return CompactCounts(
        n_channels=int(n_ch),
        n_pixels=int(n_pix),
        indptr=indptr,
        indices=indices,
        counts=counts,
        dense=dense,
        total=float(pixel_sums.sum()),
        ylogy=ylogy,
        pixel_sums=np.asarray(pixel_sums, dtype=np.float64),
        channel_sums=channel_sums,
    )
