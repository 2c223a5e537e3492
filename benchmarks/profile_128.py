"""Where one iteration of the 128² fit goes (issue 18, third pass round): not a test.

``bench_espm.py``'s SmartNMF problem (``paper_N293_s1``, 128² × 1980, 293 counts/px, k = 3, its
fixed G, default settings, ``tol=0``) is fitted for ``--iter`` iterations; the arguments of the
compiled pass of iteration ``--capture`` are kept and the pieces of a pass are then timed on
them, each back to back (fastest and median of ``--repeat`` calls), on one and on two numba
threads:

- the plain pass (H step and ``R Hᵀ``, with the fused extrapolation, as the loop calls it);
- the H step alone (ratio sweep + per-pixel update, ``accumulate=False``);
- the ``R Hᵀ`` sweep alone (``update_h=False``);
- the pass with the loss; the loss-only pass;
- the thread balance: one thread against two on the same pass; the serial kernel;
- the ratio sweep alone (a copy of the pass's loop), so that the per-pixel update is the H step
  less it.

The fit's own iterations (median and mean, two threads) and its plain kernel calls give the
time outside the kernel per iteration. ``--no-active``: :data:`esmpy_hs.nmf._solver.ACTIVE_SET`
off (the captured pass is then a full sweep).

Run from the repository root: ``PYTHONPATH=. nice -n 10 python benchmarks/profile_128.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from numba import njit

import esmpy_hs.nmf._solver as solver
from esmpy_hs.nmf import _kernels


def capture(n_iter: int, at: int, **kw):
    """Fit bench_espm's problem; return the kernel arguments of the main loop's plain pass
    ``at`` (``"args"``), the seconds of its plain kernel calls (``"kernel"``) and the time
    stamps of its iterations (``"stamps"``)."""
    from bench_espm import our_estimator, problem

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, G, mask, shape, *_ = problem()
    kept: dict = {"kernel": [], "stamps": []}
    orig = _kernels.h_pass_sparse
    calls = [0]

    def spy(*args):
        update_h, accumulate, want_loss = args[20], args[21], args[22]
        # the main loop's plain passes (not the start's passes over binned blocks)
        plain = update_h and accumulate and not want_loss and args[0].shape[0] - 1 == X.shape[0]
        if plain:
            calls[0] += 1
            if calls[0] == at:
                kept["args"] = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)
        t0 = time.perf_counter()
        out = orig(*args)
        if plain:
            kept["kernel"].append(time.perf_counter() - t0)
        return out

    _kernels.h_pass_sparse = spy
    try:
        est = our_estimator(G, mask, shape, max_iter=n_iter, tol=0.0,
                            callback=lambda *_: kept["stamps"].append(time.perf_counter()),
                            **kw)  # fmt: skip
        est.fit(X)
    finally:
        _kernels.h_pass_sparse = orig
    return kept


def timeit(f, repeat: int) -> tuple[float, float]:
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return float(np.min(t)), float(np.median(t))


def with_flags(args, update_h, accumulate, want_loss, extrap=True):
    a = list(args)
    a[20], a[21], a[22] = update_h, accumulate, want_loss
    if not extrap or not update_h:
        a[27] = np.empty((0, a[27].shape[1]), dtype=a[27].dtype)
    if not update_h:
        a[7] = np.empty_like(a[7])
    return tuple(a)


@njit(cache=True, fastmath=_kernels._FASTMATH)
def ratio_sweep(indptr, indices, counts, D, Ht, inv_scale, kt):
    """The plain pass's ratio sweep (``Dᵀ r`` of every pixel, paired counts) and nothing else,
    on one thread (its share of the H step; the rest is the per-pixel update)."""
    a = np.zeros(len(kt))
    tot = 0.0
    for p in range(indptr.shape[0] - 1):
        a[:] = 0.0
        _kernels._ratios_pairs(indptr[p], indptr[p + 1], indices, counts, D, Ht[p], a,
                               inv_scale, kt)  # fmt: skip
        tot += a[0]
    return tot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iter", type=int, default=60)
    ap.add_argument("--capture", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--no-active", action="store_true", help="_solver.ACTIVE_SET off")
    args = ap.parse_args()
    solver.ACTIVE_SET = not args.no_active
    print(f"load average {os.getloadavg()}", flush=True)
    capture(10, 5)  # compile
    for _ in range(3):
        kept = capture(args.iter, args.capture)
        it = np.diff(kept["stamps"])
        kern = np.asarray(kept["kernel"])
        print(f"fit, 2 threads: iteration median {1e3 * np.median(it):.3f} ms, mean "
              f"{1e3 * it.mean():.3f}; plain kernel call median {1e3 * np.median(kern):.3f} ms "
              f"({kern.size} calls); outside the kernel ≈ "
              f"{1e3 * (np.median(it) - np.median(kern)):.3f} ms", flush=True)  # fmt: skip
    kargs = kept["args"]
    indptr = kargs[0]
    npx = indptr.shape[0] - 1
    nnz = int(indptr[-1])
    print(f"{npx} px, {nnz} nonzeros ({nnz / npx:.1f}/px), D {kargs[3].shape}, "
          f"blocks {kargs[23].shape[0]}, λ = {kargs[11]}", flush=True)  # fmt: skip
    cases = {
        "plain pass (fused extrapolation)": with_flags(kargs, True, True, False),
        "plain pass, no extrapolation": with_flags(kargs, True, True, False, extrap=False),
        "H step (ratio sweep + update)": with_flags(kargs, True, False, False),
        "R Hᵀ sweep alone": with_flags(kargs, False, True, False),
        "pass + loss": with_flags(kargs, True, True, True),
        "loss only": with_flags(kargs, False, False, True),
    }
    for nth in (1, 2):
        numba.set_num_threads(nth)
        print(f"\nnumba threads {nth} (fastest / median of {args.repeat}, ms):")
        for name, a in cases.items():
            _kernels.h_pass_sparse(*a)
            lo, med = timeit(lambda a=a: _kernels.h_pass_sparse(*a), args.repeat)
            print(f"  {name:36s} {1e3 * lo:7.3f} / {1e3 * med:7.3f}", flush=True)
    numba.set_num_threads(2)
    a = cases["plain pass (fused extrapolation)"]
    lo_s, _ = timeit(lambda: _kernels.h_pass_sparse_serial(*a), 10)
    print(f"\nserial kernel, whole map: {1e3 * lo_s:.3f} ms")
    sweep = (kargs[0], kargs[1], kargs[2], kargs[3], kargs[5], kargs[8], kargs[26])
    ratio_sweep(*sweep)
    lo, med = timeit(lambda: ratio_sweep(*sweep), args.repeat)
    print(f"ratio sweep alone (one thread, a copy of the pass's loop): {1e3 * lo:.3f} / "
          f"{1e3 * med:.3f} ms")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
