"""Chunked driver: the same fit as :class:`~esmpy_hs.nmf.SmartNMF` on a dask array.

The counts X (pixels × channels, a dask array) are never loaded whole. Every chunk of pixels (one
dask block holding whole spectra) is converted once to the compact by-pixel form
(:class:`._data.CompactCounts`) and then, per iteration (see :mod:`._solver`)::

    D = compute_D(G, W); colsum = D.sum(0)                     # on the client
    for every chunk [a, b):                                     # one task per chunk
        part, Ht_new[a:b] = h_pass(chunk, D, colsum, Ht[window], ...)
    tot = combine(parts)                                        # channels × k, k, 4 numbers
    W = update_W(W, G, tot.RHt, tot.hsum, ...)                  # on the client

H (pixels × k) stays whole on the client: a chunk's H step reads the previous H of its own pixels
and of their grid neighbours (the Laplacian couples pixels across chunk borders), so each task
gets the rows ``window = [lo, hi)`` of H that cover its pixels and their neighbours. The result
is the in-memory iteration, up to the order of floating-point sums over chunks. With the
red-black sweep (a pixel grid with λ > 0, see :func:`._solver.sweep`) an update is two such
passes, one per colour, the second reading the first's H: ``"stream"`` then reads the map twice
per iteration.

Where the chunks live (``persist``):

``"memory"``
    Each chunk is read and converted once; the compact chunks stay in memory — in this process
    with dask's local schedulers, on the workers (as futures) with a ``dask.distributed`` client.
``"stream"``
    Only per-pixel statistics are kept; every pass re-reads each chunk from the dask graph
    (usually the file on disk) and converts it again. Memory stays at a few chunks, but an
    iteration costs a read of the whole map.
``"auto"`` (default)
    ``"memory"`` when the compact size, estimated from the first chunk, is below
    :data:`MEMORY_FRACTION` of the available memory (this machine's, or the sum of the workers'
    memory limits), otherwise ``"stream"``.

The ``"auto"`` start needs the counts: its binned statistics (per-block sums of b × b pixels, as
in :func:`._init.auto_init`) are accumulated chunk by chunk and handed to the same
``auto_init`` in a stand-in :class:`._data.CompactCounts` that holds each block's sum in the
block's first pixel (binning that stand-in gives the same block sums). When no binning applies
(no pixel grid, ≥ 3000 counts per pixel, or a small map) the counts of all pixels are gathered
on the client for the start; pass ``init="random"`` or ``init=(W, H)`` to avoid it.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from esmpy_hs.nmf._blocksum import block_sums
from esmpy_hs.nmf._data import CompactCounts, as_compact
from esmpy_hs.nmf._init import bin_factor, block_index
from esmpy_hs.nmf._solver import HParams, PassResult, combine, h_pass

#: ``persist="auto"``: the first chunk converted for the size estimate is kept as the engine's
#: first read of it (False: read and converted again, as before; for the benchmark's baseline)
REUSE_FIRST_CHUNK = True
#: ``persist="auto"`` keeps the chunks in memory when their estimated compact size is below this
#: fraction of the available memory (or of the workers' total memory limit)
MEMORY_FRACTION = 0.5
#: memory assumed available when psutil cannot tell (bytes)
DEFAULT_MEMORY_BUDGET = 4 * 2**30
#: pixel chunks whose raw (dense) size exceeds this are split (bytes)
MAX_CHUNK_BYTES = 256 * 2**20
#: with a distributed client, a window of H larger than this is scattered rather than sent inline
_SCATTER_BYTES = 2 * 2**20

PERSIST_MODES = ("auto", "memory", "stream")


def _sizeof_compact(c: CompactCounts) -> int:
    """How large a compact chunk is, for dask (so the scheduler keeps tasks next to them)."""
    return int(c.nbytes + c.pixel_sums.nbytes + c.channel_sums.nbytes + 200)


def _register_sizeof() -> None:
    from dask.sizeof import sizeof

    sizeof.register(CompactCounts)(_sizeof_compact)


# on import (here, and on the workers that unpickle the chunk tasks); the estimator imports this
# module only for a dask array
_register_sizeof()


def detect_client(client):
    """The ``dask.distributed`` client to use: ``client`` itself, the default one, or None.

    ``client=None`` looks for a client the user opened (``distributed.default_client()``);
    ``client=False`` never uses one.
    """
    if client is False:
        return None
    if client is not None:
        return client
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def prepare_array(X, *, channels_first: bool = False, max_chunk_bytes: int | None = None):
    """X as pixels × channels with whole spectra per block and no block above the size limit.

    ``max_chunk_bytes`` (default :data:`MAX_CHUNK_BYTES`) bounds a block's dense size.
    """
    import dask.array as da

    if max_chunk_bytes is None:
        max_chunk_bytes = MAX_CHUNK_BYTES
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (pixels × channels), got shape {X.shape}")
    if channels_first:
        X = X.T
    if X.shape[0] < 1 or X.shape[1] < 1 or any(math.isnan(s) for s in X.shape):
        raise ValueError(
            f"X must have known, non-zero sizes (pixels × channels), got shape {X.shape}"
        )
    if X.dtype.kind not in "uifb":
        raise ValueError(f"X must be real numeric counts, got dtype {X.dtype}")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    row_bytes = X.shape[1] * X.dtype.itemsize
    max_px = max(1, int(max_chunk_bytes) // max(row_bytes, 1))
    if max(X.chunks[0]) > max_px:
        new = []
        for c in X.chunks[0]:
            parts = -(-c // max_px)
            new += [c // parts + (1 if i < c % parts else 0) for i in range(parts)]
        X = X.rechunk({0: tuple(new)})
    assert isinstance(X, da.Array)
    return X


# ---------------------------------------------------------------------------- chunk tasks
def _convert(block, float_dtype) -> CompactCounts:
    """One block of counts (pixels × channels) in compact form."""
    return as_compact(np.asarray(block), float_dtype=float_dtype)


@dataclass
class _Stats:
    n_pixels: int
    total: float
    ylogy: float
    pixel_sums: np.ndarray
    channel_sums: np.ndarray
    nbytes: int


def _stats(c: CompactCounts) -> _Stats:
    return _Stats(c.n_pixels, c.total, c.ylogy, c.pixel_sums, c.channel_sums, c.nbytes)


def _convert_stats(block, float_dtype) -> _Stats:
    return _stats(_convert(block, float_dtype))


def _column_sums(block: np.ndarray) -> np.ndarray:
    """Σ over the pixels of every column of ``block``, float64 (integers summed exactly)."""
    acc = np.int64 if block.dtype.kind in "biu" else np.float64
    return block.sum(axis=0, dtype=acc).astype(np.float64)


def _convert_first(block, float_dtype, columns
                   ) -> tuple[CompactCounts, np.ndarray | None]:  # fmt: skip
    """A chunk on its first read: its compact form and, with ``columns`` (c0, c1) (the block
    holds every column, ``[c0, c1)`` are fitted), the pixel sums of all its columns (read
    once: the summed spectrum comes with the chunk); None without ``columns``."""
    if columns is None:
        return _convert(block, float_dtype), None
    block = np.asarray(block)
    c0, c1 = columns
    c = _convert(block[:, c0:c1], float_dtype)
    full = np.empty(block.shape[1])
    full[:c0] = _column_sums(block[:, :c0])
    full[c0:c1] = c.channel_sums
    full[c1:] = _column_sums(block[:, c1:])
    return c, full


def _convert_binned(block, float_dtype, blocks):
    return block_sums(_convert(block, float_dtype), blocks)


def _pass(c: CompactCounts, ctx, D, colsum, Ht_win, flags) -> tuple:
    """H step of one chunk with a window of H (``ctx`` from :meth:`_Engine._contexts`); returns
    the partial sums, the chunk's new H (or None) and its pixels' moves (the active set, or
    None)."""
    start, hp = ctx
    update_h, accumulate, want_loss, phase, moved, skip_tol = flags
    Ht_win = np.ascontiguousarray(Ht_win)
    out = np.empty((c.n_pixels, Ht_win.shape[1]), dtype=Ht_win.dtype) if update_h else Ht_win
    moved = None if moved is None else np.array(moved, dtype=np.float64)
    res = h_pass(c.chunk(0, c.n_pixels), D, colsum, Ht_win, start, out, hp,
                 update_h=update_h, accumulate=accumulate, want_loss=want_loss,
                 phase=phase, moved=moved, skip_tol=skip_tol)  # fmt: skip
    return res, (out if update_h else None), moved


def _pass_packed(packed, D, colsum, Ht_win, flags):
    return _pass(packed[0], packed[1], D, colsum, Ht_win, flags)


def _pass_block(block, float_dtype, ctx, D, colsum, Ht_win, flags):
    return _pass(_convert(block, float_dtype), ctx, D, colsum, Ht_win, flags)


def _pack(c: CompactCounts, ctx) -> tuple:
    return (c, ctx)


# ---------------------------------------------------------------------------- engines
class _Engine:
    """The chunks of one fit and how a pass over them runs (see the module docstring)."""

    mode = "memory"

    def __init__(self, X, float_dtype, columns: tuple[int, int] | None = None) -> None:
        self.X = X
        self.float_dtype = np.dtype(float_dtype)
        self.blocks = list(X.to_delayed().ravel())
        sizes = X.chunks[0]
        edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.bounds = [(int(edges[i]), int(edges[i + 1])) for i in range(len(sizes))]
        # with ``columns`` X holds every column; only [c0, c1) are fitted, and the first read
        # of each chunk also sums all its columns (``column_sums``)
        self.columns = columns
        self.column_sums: np.ndarray | None = None
        c0, c1 = (0, int(X.shape[1])) if columns is None else columns
        self.n_pixels, self.n_channels = int(X.shape[0]), int(c1 - c0)
        self.hp: HParams | None = None
        # the first chunk as converted by ``persist="auto"``'s estimate (its first read, with
        # its column sums when ``columns`` is set), used once by ``load`` instead of a second
        # read; None: read it there
        self.first: tuple[CompactCounts, np.ndarray | None] | None = None

    @staticmethod
    def _keep(first: tuple[CompactCounts, np.ndarray | None], sums: list) -> CompactCounts:
        """The compact chunk of a first read; its column sums (if any) appended to ``sums``."""
        c, full = first
        if full is not None:
            sums.append(full)
        return c

    def _take_first(self) -> tuple[CompactCounts, np.ndarray | None] | None:
        """The first chunk as converted by ``persist="auto"``'s estimate, once (else None)."""
        first, self.first = self.first, None
        return first

    def _add_column_sums(self, parts: list[np.ndarray]) -> None:
        if self.columns is None:
            return
        total = np.zeros(int(self.X.shape[1]))
        for q in parts:  # in chunk order
            total += q
        self.column_sums = total


    # set-up ---------------------------------------------------------------------------
    def collect_stats(self, stats: list[_Stats]) -> CompactCounts:
        """Stand-in CompactCounts (no counts) with the statistics of the whole map."""
        pixel_sums = np.concatenate([s.pixel_sums for s in stats])
        channel_sums = np.zeros(self.n_channels)
        for s in stats:
            channel_sums += s.channel_sums
        self.compact_bytes = int(sum(s.nbytes for s in stats))
        return CompactCounts(
            n_channels=self.n_channels, n_pixels=self.n_pixels, indptr=None, indices=None,
            counts=None, dense=None, total=float(pixel_sums.sum()),
            ylogy=float(sum(s.ylogy for s in stats)), pixel_sums=pixel_sums,
            channel_sums=channel_sums,
        )  # fmt: skip

    def set_params(self, hp: HParams) -> None:
        self.hp = hp

    def _contexts(self, hp: HParams) -> list[tuple[int, int, tuple]]:
        """Per chunk: the window ``[lo, hi)`` of H it reads and ``(start in window, local hp)``."""
        out = []
        ip, ix = hp.adj_indptr, hp.adj_indices
        for a, b in self.bounds:
            nb = ix[ip[a] : ip[b]]
            lo = min(a, int(nb.min())) if nb.size else a
            hi = max(b, int(nb.max()) + 1) if nb.size else b
            adj_ptr = ip[lo : hi + 1] - ip[lo]
            adj_ix = (ix[ip[lo] : ip[hi]].astype(np.int64) - lo).astype(np.int32)
            fixed = None if hp.fixed_Ht is None else np.ascontiguousarray(hp.fixed_Ht[lo:hi])
            colour = None if hp.colour is None else np.ascontiguousarray(hp.colour[lo:hi])
            local = replace(hp, adj_indptr=np.ascontiguousarray(adj_ptr), adj_indices=adj_ix,
                            fixed_Ht=fixed, colour=colour)  # fmt: skip
            out.append((lo, hi, (a - lo, local)))
        return out

    def close(self) -> None:
        pass


class _LocalMemory(_Engine):
    """Compact chunks kept in this process; passes run here (numba uses all cores)."""

    mode = "memory"

    def __init__(self, X, float_dtype, scheduler=None, columns=None) -> None:
        super().__init__(X, float_dtype, columns)
        self.scheduler = scheduler
        self.chunks: list[CompactCounts] = []

    def load(self) -> list[_Stats]:
        import dask

        batch = max(1, _n_threads())
        sums: list[np.ndarray] = []
        first = self._take_first()
        if first is not None:
            self.chunks.append(self._keep(first, sums))
        for i in range(len(self.chunks), len(self.blocks), batch):
            tasks = [dask.delayed(_convert_first)(b, self.float_dtype, self.columns)
                     for b in self.blocks[i : i + batch]]  # fmt: skip
            self.chunks += [self._keep(out, sums)
                            for out in dask.compute(*tasks, scheduler=self.scheduler)]  # fmt: skip
        self._add_column_sums(sums)
        return [_stats(c) for c in self.chunks]

    def binned(self, blocks: np.ndarray) -> list:
        return [block_sums(c, blocks[a:b])
                for c, (a, b) in zip(self.chunks, self.bounds, strict=True)]  # fmt: skip

    def run(self, D, colsum, Ht, Ht_out, *, update_h, accumulate, want_loss,
            phase=-1, moved=None, skip_tol=0.0) -> PassResult:  # fmt: skip
        parts = []
        for c, (a, b) in zip(self.chunks, self.bounds, strict=True):
            out = Ht_out[a:b] if update_h else Ht
            parts.append(h_pass(c.chunk(0, c.n_pixels), D, colsum, Ht, a, out, self.hp,
                                update_h=update_h, accumulate=accumulate,
                                want_loss=want_loss, phase=phase,
                                moved=None if moved is None else moved[a:b],
                                skip_tol=skip_tol))  # fmt: skip
        return combine(parts)

    run.active_set = True

    def close(self) -> None:
        self.chunks = []


class _LocalStream(_LocalMemory):
    """Chunks re-read from the dask graph at every pass (one read ahead, in a thread)."""

    mode = "stream"

    def _read(self, i: int, first: bool = False) -> CompactCounts:
        import dask

        if first:
            out = self._take_first() if i == 0 else None
            if out is None:
                (block,) = dask.compute(self.blocks[i], scheduler=self.scheduler)
                out = _convert_first(block, self.float_dtype, self.columns)
            return self._keep(out, self._sums)
        # the later passes read the fitted columns only
        (block,) = dask.compute(self._fit_blocks[i], scheduler=self.scheduler)
        return _convert(block, self.float_dtype)

    @cached_property
    def _fit_blocks(self) -> list:
        """The chunks restricted to the fitted columns (the reads after the first)."""
        if self.columns is None:
            return self.blocks
        c0, c1 = self.columns
        return list(self.X[:, c0:c1].to_delayed().ravel())

    def _each(self, first: bool = False):
        """Yield ``(i, compact chunk)`` in order, reading the next chunk while one is used."""
        n = len(self.blocks)
        with ThreadPoolExecutor(max_workers=1) as pool:
            fut = pool.submit(self._read, 0, first)
            for i in range(n):
                c = fut.result()
                if i + 1 < n:
                    fut = pool.submit(self._read, i + 1, first)
                yield i, c
                del c

    def load(self) -> list[_Stats]:
        self._sums: list[np.ndarray] = []
        out = [_stats(c) for _, c in self._each(first=True)]
        self._add_column_sums(self._sums)
        return out

    def binned(self, blocks: np.ndarray) -> list:
        return [block_sums(c, blocks[slice(*self.bounds[i])]) for i, c in self._each()]

    def run(self, D, colsum, Ht, Ht_out, *, update_h, accumulate, want_loss,
            phase=-1, moved=None, skip_tol=0.0) -> PassResult:  # fmt: skip
        parts = []
        for i, c in self._each():
            a, b = self.bounds[i]
            out = Ht_out[a:b] if update_h else Ht
            parts.append(h_pass(c.chunk(0, c.n_pixels), D, colsum, Ht, a, out, self.hp,
                                update_h=update_h, accumulate=accumulate,
                                want_loss=want_loss, phase=phase,
                                moved=None if moved is None else moved[a:b],
                                skip_tol=skip_tol))  # fmt: skip
        return combine(parts)

    run.active_set = True


class _Distributed(_Engine):
    """Chunks on the workers of a ``dask.distributed`` client, one task per chunk and pass."""

    def __init__(self, X, float_dtype, client, mode: str) -> None:
        super().__init__(X, float_dtype)  # every column fitted (no ``columns``)
        self.client = client
        self.mode = mode
        self.futures: list = []
        self.ctx: list = []

    def load(self) -> list[_Stats]:
        import dask

        c = self.client
        if self.mode == "memory":
            self.futures = c.compute(
                [dask.delayed(_convert)(b, self.float_dtype) for b in self.blocks]
            )
            return c.gather(c.map(_stats, self.futures, pure=False))
        tasks = [dask.delayed(_convert_stats)(b, self.float_dtype) for b in self.blocks]
        return c.gather(c.compute(tasks))

    def binned(self, blocks: np.ndarray) -> list:
        import dask

        c = self.client
        sl = [blocks[a:b] for a, b in self.bounds]
        if self.mode == "memory":
            return c.gather([c.submit(block_sums, f, s, pure=False)
                             for f, s in zip(self.futures, sl, strict=True)])  # fmt: skip
        tasks = [dask.delayed(_convert_binned)(b, self.float_dtype, s)
                 for b, s in zip(self.blocks, sl, strict=True)]  # fmt: skip
        return c.gather(c.compute(tasks))

    def set_params(self, hp: HParams) -> None:
        self.hp = hp
        self.ctx = self._contexts(hp)
        if self.mode == "memory":
            # pair each chunk with its context on the worker that holds the chunk
            from distributed import wait

            packed = [self.client.submit(_pack, f, ctx[2], pure=False)
                      for f, ctx in zip(self.futures, self.ctx, strict=True)]  # fmt: skip
            self.futures = packed
            wait(packed)
            # send each chunk's tasks to the worker that holds it (a loose restriction: another
            # worker may take over, e.g. if that one leaves)
            who = self.client.who_has(packed)
            self.where = [sorted(who.get(f.key, ()))[:1] or None for f in packed]

    def run(self, D, colsum, Ht, Ht_out, *, update_h, accumulate, want_loss,
            phase=-1, moved=None, skip_tol=0.0) -> PassResult:  # fmt: skip
        import dask

        c = self.client
        futs = []
        try:
            for i, (lo, hi, ctx) in enumerate(self.ctx):
                a, b = self.bounds[i]
                flags = (update_h, accumulate, want_loss, phase,
                         None if moved is None else moved[a:b], skip_tol)  # fmt: skip
                win = Ht[lo:hi]
                if win.nbytes > _SCATTER_BYTES:
                    win = c.scatter(np.ascontiguousarray(win), hash=False)
                if self.mode == "memory":
                    futs.append(c.submit(_pass_packed, self.futures[i], D, colsum, win, flags,
                                         pure=False, workers=self.where[i],
                                         allow_other_workers=True))  # fmt: skip
                else:
                    futs.append(c.compute(dask.delayed(_pass_block)(
                        self.blocks[i], self.float_dtype, ctx, D, colsum, win, flags)))  # fmt: skip
            results = c.gather(futs)
        except BaseException:
            c.cancel(futs)
            raise
        parts = []
        for (a, b), (res, out, moves) in zip(self.bounds, results, strict=True):
            parts.append(res)
            if update_h:
                Ht_out[a:b] = out
            if moves is not None:
                moved[a:b] = moves
        return combine(parts)

    run.active_set = True

    def close(self) -> None:
        if self.futures:
            try:
                self.client.cancel(self.futures)
            except Exception:  # the client may be closing already
                pass
        self.futures = []


def _n_threads() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _available_memory(client) -> int:
    """Memory the compact chunks may use before ``"auto"`` switches to streaming (bytes)."""
    try:
        import psutil

        local = int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil comes with distributed
        local = DEFAULT_MEMORY_BUDGET
    if client is None:
        return local
    try:
        workers = client.scheduler_info()["workers"].values()
        limits = [int(w.get("memory_limit") or 0) for w in workers]
        if limits and all(v > 0 for v in limits):
            return int(sum(limits))
    except Exception:  # pragma: no cover - unusual scheduler
        pass
    return local


def choose_mode(X, float_dtype, persist: str, client, columns=None
                ) -> tuple[str, tuple[CompactCounts, np.ndarray | None] | None]:  # fmt: skip
    """Resolve ``persist="auto"`` from the compact size of the first chunk (see module doc).

    Returns the mode and, without a client, the first chunk as converted for the estimate
    (``(compact, column sums or None)``, what the engine's first read of it would give) so
    that the engine does not read and convert it again; None otherwise.
    """
    if persist != "auto":
        return persist, None
    import dask

    first = None
    if client is not None:
        block = X.blocks[0] if columns is None else X.blocks[0][:, columns[0] : columns[1]]
        st = client.compute(dask.delayed(_convert_stats)(block, float_dtype)).result()
    else:
        block = X.blocks[0].compute(scheduler="threads")
        first = _convert_first(block, float_dtype, columns)
        del block
        st = _stats(first[0])
    estimate = st.nbytes / max(st.n_pixels, 1) * X.shape[0] * 1.1
    mode = "memory" if estimate < MEMORY_FRACTION * _available_memory(client) else "stream"
    return mode, (first if REUSE_FIRST_CHUNK else None)


def make_engine(X, float_dtype, persist: str = "auto", client=None,
                columns: tuple[int, int] | None = None) -> _Engine:  # fmt: skip
    """The engine for X (prepared by :func:`prepare_array`) and the chosen persistence.

    ``columns`` (c0, c1): X holds every column, only ``[c0, c1)`` are fitted, and the first
    read of the chunks sums every column (``engine.column_sums``); local schedulers only.
    """
    if persist not in PERSIST_MODES:
        raise ValueError(f"persist must be one of {PERSIST_MODES}, got {persist!r}")
    client = detect_client(client)
    if columns is not None:
        c0, c1 = (int(c) for c in columns)
        if client is not None:
            raise ValueError("columns= needs a local scheduler (no dask.distributed client)")
        if not 0 <= c0 < c1 <= X.shape[1]:
            raise ValueError(f"columns must be 0 ≤ c0 < c1 ≤ {X.shape[1]}, got {columns}")
        columns = (c0, c1)
    mode, first = choose_mode(X, float_dtype, persist, client, columns)
    if client is not None:
        return _Distributed(X, float_dtype, client, mode)
    # no client: dask's default local scheduler (threads unless configured otherwise); if a
    # distributed client is the default but client=False was asked, run on local threads
    scheduler = "threads" if "distributed" in sys.modules and _default_is_distributed() else None
    cls = _LocalMemory if mode == "memory" else _LocalStream
    engine = cls(X, float_dtype, scheduler, columns)
    engine.first = first
    return engine


def _default_is_distributed() -> bool:
    try:
        from distributed import default_client

        default_client()
        return True
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------- the start
def binned_stand_in(engine: _Engine, stats: CompactCounts, shape, k: int) -> CompactCounts:
    """Counts that :func:`._init.auto_init` bins to the map's own binned counts.

    Each full b × b block's summed counts sit in the block's first pixel (row-major), every
    other pixel is empty, so ``auto_init``'s binning returns the same block sums; ``total`` and
    ``pixel_sums`` are the map's. With b = 1 (no binning) these are all the counts.
    """
    p = stats.n_pixels
    b = bin_factor(shape, stats.total / p, k)
    if b > 1:
        block, _, _ = block_index(shape, b)
    else:
        block = np.arange(p)
    inside = np.flatnonzero(block >= 0)
    _, first = np.unique(block[inside], return_index=True)
    rep = inside[first]  # first pixel of each block, increasing with the block id
    parts = engine.binned(block)
    ids = np.concatenate([q[0] for q in parts])
    big = sp.csr_array(sp.vstack([q[1] for q in parts], format="csr"))
    del parts
    uniq, inv = np.unique(ids, return_inverse=True)
    if uniq.size != ids.size:  # blocks cut by a chunk border: sum their parts
        S = sp.csr_array((np.ones(ids.size), (inv, np.arange(ids.size))),
                         shape=(uniq.size, ids.size))  # fmt: skip
        big = sp.csr_array(S @ big)
        big.sum_duplicates()
        big.sort_indices()
    elif not np.all(np.diff(ids) > 0):
        big = big[np.argsort(ids)]
    cnt = np.zeros(p, dtype=np.int64)
    cnt[rep[uniq]] = np.diff(big.indptr)
    indptr = np.zeros(p + 1, dtype=np.int64)
    np.cumsum(cnt, out=indptr[1:])
    vals = big.data
    if np.all(vals == np.round(vals)) and (vals.size == 0 or vals.max() < 2**32):
        vals = vals.astype(np.uint32)
    idt = np.uint16 if stats.n_channels <= 65536 else np.int32
    return replace(stats, indptr=indptr, indices=big.indices.astype(idt), counts=vals)


# ---------------------------------------------------------------------------- the source
class ChunkedSource:
    """Data source (see :mod:`._fit`) of a fit over a dask array X, chunk by chunk.

    Opening it reads every chunk once (to convert it, or only for its statistics when
    streaming); the fit then runs :mod:`._fit`'s path with the engine's pass. ``details``
    reports ``persist`` (``"memory"`` or ``"stream"``), ``n_chunks`` and ``compact_bytes``.

    With ``columns=(c0, c1)`` X holds every column and only ``[c0, c1)`` are fitted; the same
    first read sums every column over the pixels (``column_sums``, float64; exact for integer
    counts): a caller that needs the summed spectrum before the fit (the calibration) opens
    the source first and passes it to :meth:`~esmpy_hs.nmf.SmartNMF.fit_transform` instead of
    summing the array in a second read. Local schedulers only.
    """

    desc = "SmartNMF (chunked)"

    def __init__(self, X, float_dtype, persist: str = "auto", client=None,
                 columns: tuple[int, int] | None = None) -> None:  # fmt: skip
        if persist not in PERSIST_MODES:
            raise ValueError(f"persist must be one of {PERSIST_MODES}, got {persist!r}")
        self.engine = make_engine(X, float_dtype, persist, client, columns)
        try:
            self.stats = self.engine.collect_stats(self.engine.load())
        except BaseException:
            self.engine.close()
            raise
        self.column_sums = self.engine.column_sums
        self.float_dtype = self.engine.float_dtype
        self.details = {
            "persist": self.engine.mode,
            "n_chunks": len(self.engine.bounds),
            "compact_bytes": self.engine.compact_bytes,
        }

    def start_counts(self, plan) -> CompactCounts:
        s = plan.settings
        return binned_stand_in(self.engine, self.stats, s.shape, s.k)

    def binned(self, block: np.ndarray) -> list:
        """Per-chunk sums over blocks of pixels, as :meth:`._fit.InMemory.binned`."""
        return self.engine.binned(block)

    def bind(self, hp: HParams):
        self.engine.set_params(hp)
        return self.engine.run

    def close(self) -> None:
        self.engine.close()
