"""The 128² target of issue 18: a default ``decomposition`` of ``paper_N293_s1`` (128 × 128 × 1980,
293 counts/px, the other simulator's map in ``../shared/data/independent/``) end to end, with a
switch measured in one process (alternated, fastest of ``--repeat`` rounds).

Switch ``blas``: the fit loops with one BLAS thread (:mod:`esmpy_hs.nmf._blas`, the default) or
with the BLAS libraries' own threads (before). Per fit: the wall time of ``decomposition``, the
main loop's iterations and its seconds per iteration (the longest loop of the fit), the median
pass over the counts (plain H step + R Hᵀ); and the largest difference of the answer between
the two settings (spectral angle in degrees, loadings' largest absolute difference).

Run from the repository root: ``PYTHONPATH=. nice -n 10 python benchmarks/bench_128.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_iterations import load

import esmpy_hs.nmf._blas as blas
import esmpy_hs.nmf._fit as fit
import esmpy_hs.nmf._solver as solver

_record: dict[str, list] = {"loop": [], "pass": []}


def _timed_iterate(orig):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        r = orig(*args, **kwargs)
        if kwargs.get("losses", True):  # not the H-only warm-up
            _record["loop"].append((time.perf_counter() - t, r.n_iter))
        return r

    return wrapper


def _timed_pass(orig):
    def wrapper(chunk, *args, **kwargs):
        t = time.perf_counter()
        r = orig(chunk, *args, **kwargs)
        if kwargs.get("accumulate") and not kwargs.get("want_loss"):
            _record["pass"].append(time.perf_counter() - t)
        return r

    return wrapper


def one_fit(s):
    _record["loop"].clear()
    _record["pass"].clear()
    t = s.deepcopy()
    t0 = time.perf_counter()
    t.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False)
    wall = time.perf_counter() - t0
    loop, n_iter = max(_record["loop"], key=lambda x: x[1])  # the main loop
    W = np.asarray(t.learning_results.factors, dtype=float)
    H = np.asarray(t.learning_results.loadings, dtype=float)
    return dict(wall=wall, n_iter=n_iter, per_iter=loop / max(n_iter, 1),
                pass_ms=1e3 * float(np.median(_record["pass"])), W=W, H=H)  # fmt: skip


def angle(a, b):
    a = a / np.linalg.norm(a, axis=0)
    b = b / np.linalg.norm(b, axis=0)
    return float(np.degrees(np.arccos(np.clip(np.sum(a * b, axis=0), -1, 1))).max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--map", default="paper_N293_s1")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    fit.iterate = _timed_iterate(fit.iterate)
    solver.h_pass = _timed_pass(solver.h_pass)
    s = load(args.map)[0]
    one_fit(s)  # compile / warm the caches
    best: dict[bool, dict] = {}
    for rnd in range(args.repeat):
        for on in (False, True):
            blas.ENABLED = on
            r = one_fit(s)
            print(f"round {rnd} one_blas_thread={on}: {r['wall']:.2f} s, {r['n_iter']} iterations, "
                  f"{1e3 * r['per_iter']:.2f} ms/iteration, pass median {r['pass_ms']:.2f} ms",
                  flush=True)  # fmt: skip
            if on not in best or r["wall"] < best[on]["wall"]:
                best[on] = r
    old, new = best[False], best[True]
    print(f"fastest: before {old['wall']:.2f} s ({1e3 * old['per_iter']:.2f} ms/it), "
          f"after {new['wall']:.2f} s ({1e3 * new['per_iter']:.2f} ms/it)")
    print(f"answer: largest angle {angle(old['W'], new['W']):.3g}°, "
          f"loadings max |Δ| {np.abs(old['H'] - new['H']).max():.3g}, "
          f"factors max rel |Δ| {np.abs(old['W'] - new['W']).max() / np.abs(old['W']).max():.3g}")


if __name__ == "__main__":
    main()
