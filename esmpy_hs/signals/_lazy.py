"""The counts of a lazy (dask-backed) signal as the pixels × channels dask array the chunked
driver (:mod:`esmpy_hs.nmf._chunked`) fits, without computing them.

HyperSpy stores a spectrum image as ``(nav..., channels)`` with the navigation in reverse order
(``(ny, nx, channels)``); the eager path unfolds it row-major (``data.reshape(-1, channels)``,
pixel ``p = row * nx + col``). To keep that order with pixel chunks that are contiguous ranges of
``p``, the blocks are made of whole rows: every axis but the first navigation axis is one chunk,
and the first axis keeps the signal's chunk boundaries, except that

- chunks smaller than :data:`MIN_CHUNK_PIXELS` pixels are merged with their neighbours (fewer,
  larger tasks), and
- chunks larger than :data:`MAX_CHUNK_BYTES` (dense, in the stored dtype) are split.

The channels ``[c0:c1)`` are cut before rechunking, so only the fitted channels are ever read.
"""

from __future__ import annotations

import math

import numpy as np

#: row chunks holding fewer pixels are merged with the next ones (while below MAX_CHUNK_BYTES)
MIN_CHUNK_PIXELS = 16384
#: row chunks above this dense size (bytes, in the stored dtype) are split
MAX_CHUNK_BYTES = 128 * 2**20


def plan_rows(chunks: tuple[int, ...], row_pixels: int, row_bytes: int) -> tuple[int, ...]:
    """Chunk sizes along the first navigation axis (see the module docstring)."""
    max_rows = max(1, MAX_CHUNK_BYTES // max(row_bytes, 1))
    min_rows = max(1, math.ceil(MIN_CHUNK_PIXELS / max(row_pixels, 1)))
    out: list[int] = []
    cur = 0
    for c in chunks:
        n = -(-c // max_rows)
        for q in [c // n + (1 if i < c % n else 0) for i in range(n)]:
            if cur and (cur >= min_rows or cur + q > max_rows):
                out.append(cur)
                cur = 0
            cur += q
    if cur:
        out.append(cur)
    return tuple(out)


def unfold(data, nav_dim: int, c0: int, c1: int):
    """Pixels × channels ``[c0:c1)`` dask array of ``data`` (lazy, row-major pixels)."""
    X = data[..., c0:c1]
    if nav_dim == 0:
        return X.reshape(1, -1).rechunk({1: -1})
    shape = X.shape
    row_pixels = int(np.prod(shape[1:nav_dim], dtype=np.int64))
    row_bytes = row_pixels * shape[-1] * X.dtype.itemsize
    rows = plan_rows(X.chunks[0], row_pixels, row_bytes)
    target = {0: rows, **{ax: -1 for ax in range(1, X.ndim)}}
    X = X.rechunk(target)
    return X.reshape(-1, shape[-1])


#: ``smart_nmf`` on a lazy signal reads the file once: the summed spectrum of every channel
#: (for the calibration, before the fit) comes from the same read that converts the chunks for
#: the fit (:func:`open_source`). False: the summed spectrum is a separate ``dask`` sum (a
#: second read of the whole file; the benchmarks' baseline).
ONE_READ = True


def open_source(data, nav_dim: int, channels: tuple[int, int], dtype, persist=None, client=None):
    """Read a lazy map once for both the fit and its summed spectrum.

    Parameters
    ----------
    data : dask array
        The signal's data, ``(nav..., channels)``.
    nav_dim : int
        Number of navigation axes.
    channels : (int, int)
        The fitted channels ``[c0, c1)``.
    dtype : numpy float dtype
        The fit's working dtype (``SmartNMF(dtype=...)``).
    persist, client
        As for ``decomposition``; None: the defaults.

    Returns
    -------
    (ChunkedSource, numpy.ndarray) or None
        The opened source of the fit (every chunk read and converted, fitted channels only) and
        the counts summed over the pixels on every channel (float64, shape (channels,)); None
        when :data:`ONE_READ` is off, with a ``dask.distributed`` client (the chunks then live
        on the workers) or on a single spectrum: the caller sums the map itself.
    """
    from esmpy_hs.nmf._chunked import ChunkedSource, detect_client, prepare_array

    if not ONE_READ or nav_dim == 0 or detect_client(client) is not None:
        return None
    X = prepare_array(unfold(data, nav_dim, 0, int(data.shape[-1])))
    source = ChunkedSource(X, dtype, "auto" if persist is None else persist, False,
                           columns=(int(channels[0]), int(channels[1])))  # fmt: skip
    return source, source.column_sums
