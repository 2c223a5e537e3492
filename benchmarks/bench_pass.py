"""Micro-benchmark of the compiled per-iteration pass (issue 18): the kernel of this tree
against the kernel of an earlier commit (``--baseline REV``, default e17524e, the kernel before
the change: ``esmpy_hs/nmf/_kernels.py`` read with ``git show`` into a temporary module), in one
process, fastest of N calls.

Synthetic data (seeded): k = 3 phases with smooth random spectra, Dirichlet abundances, Poisson
counts stored sparse by pixel (uint16 channels and counts) as the fit stores them.

Shapes (``--shape``):

- ``chunk1024``: one chunk of the 1024² × 1980 lazy fit, 16 384 pixels × 1980 channels, 290
  counts/px, λ = 0.5, every pixel moving at once;
- ``low512``: 512² × 4096 at 1 count/px, λ = 60, a red-black sweep (both colours);
- ``ref128``: 128² × 1980 at 293 counts/px, λ = 0.5.

For each: the plain pass (H step + R Hᵀ), the pass with the loss, the loss-only pass; and the
largest relative difference of the outputs (new H, R Hᵀ, H 1, loss parts) between the kernels.

Run from the repository root with ``PYTHONPATH=.`` (so that this tree's package is measured):
``nice -n 10 python benchmarks/bench_pass.py [--shape ...] [--repeat N]``; ``--fit``: whole
default fits of 64² maps with either kernel (iterations, largest differences); ``--fit512``:
whole ``smart_nmf`` fits of ``bench_coarse.py``'s 512² × 4096 map at 1 count/px.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import time

import numba
import numpy as np

from esmpy_hs.nmf import _kernels as new  # run with PYTHONPATH=. to measure this tree
from esmpy_hs.nmf._laplacian import grid_adjacency, grid_colouring
from esmpy_hs.nmf._solver import n_blocks

_HERE = pathlib.Path(__file__).parent
old = None  # the baseline kernel module, loaded by main() from --baseline


def load_baseline(rev: str):
    """``esmpy_hs/nmf/_kernels.py`` at git revision ``rev``, imported as a module of its own."""
    import subprocess
    import tempfile

    text = subprocess.run(["git", "show", f"{rev}:esmpy_hs/nmf/_kernels.py"], cwd=_HERE,
                          check=True, capture_output=True, text=True).stdout  # fmt: skip
    # kernels from before the prior's per-phase ε (78a74f9) take ε as a float; this tree's solver
    # hands them an array of k equal entries: index it (the same arithmetic)
    text = text.replace("(h[j] + eps_reg)", "(h[j] + eps_reg[j])")
    path = pathlib.Path(tempfile.mkdtemp()) / "_kernels_baseline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("_kernels_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

SHAPES = {
    "chunk1024": dict(rows=128, cols=128, n=1980, dose=290.0, lam=0.5, red_black=False),
    "low512": dict(rows=512, cols=512, n=4096, dose=1.0, lam=60.0, red_black=True),
    "ref128": dict(rows=128, cols=128, n=1980, dose=293.0, lam=0.5, red_black=False),
}


def make(rows, cols, n, dose, seed=0, k=3):
    """Sparse-by-pixel Poisson counts of a k-phase model; returns the arrays the kernel takes."""
    rng = np.random.default_rng(seed)
    p = rows * cols
    x = np.linspace(0, 1, n)
    W = np.empty((n, k))
    for j in range(k):
        W[:, j] = 0.02 * np.exp(-3 * x) + sum(
            rng.random() * np.exp(-0.5 * ((x - rng.random()) / 0.004) ** 2) for _ in range(12)
        )
    W /= W.sum(axis=0)
    H = rng.dirichlet(np.full(k, 0.7), p)
    # counts per pixel, then each count's phase and channel
    ncount = rng.poisson(dose, p)
    pix = np.repeat(np.arange(p), ncount)
    u = rng.random(pix.size)
    phase = (u[:, None] > np.cumsum(H, axis=1)[pix][:, :-1]).sum(axis=1)
    cw = np.cumsum(W, axis=0)
    ch = np.empty(pix.size, dtype=np.int64)
    v = rng.random(pix.size)
    for j in range(k):
        s = phase == j
        ch[s] = np.minimum(np.searchsorted(cw[:, j], v[s]), n - 1)
    key = np.unique(pix * n + ch, return_counts=True)
    pk, cnt = key
    pp, cc = pk // n, pk % n
    indptr = np.zeros(p + 1, dtype=np.int64)
    np.cumsum(np.bincount(pp, minlength=p), out=indptr[1:])
    scale = dose
    D = np.ascontiguousarray(W * (1.0 + 0.05 * rng.standard_normal((n, k))).clip(0.5))
    D *= 1.0 / D.sum(axis=0)
    H0 = np.ascontiguousarray(rng.dirichlet(np.full(k, 2.0), p))
    return dict(indptr=indptr, indices=cc.astype(np.uint16), counts=cnt.astype(np.uint16),
                D=D, Ht=H0, inv_scale=1.0 / scale, p=p, k=k, n=n)  # fmt: skip


def call(mod, d, adj, colour, lam, phase, update_h, accumulate, want_loss, Ht_in, Ht_out):
    p, k, n = d["p"], d["k"], d["n"]
    nb = n_blocks(p)
    acc = np.empty((nb, n, k))
    hsum = np.empty((nb, k))
    loss = np.empty((nb, 4))
    fixed = np.empty((0, k))
    mu = np.full(k, 0.0)
    # kernels from issue 18's fused extrapolation on take four more arguments (none used here)
    nargs = mod.h_pass_sparse.py_func.__code__.co_argcount
    extra = (np.empty((0, k)), 0.0, np.empty((0, k)), np.zeros(k)) if nargs > 27 else ()
    if nargs > 31:  # issue 18's active set: two more (none used here)
        extra += (np.zeros(0), 0.0)
    if nargs > 33:  # issue 14's smoothing of the model's counts: the offset (none here)
        extra += (np.empty((0, k)),)
    # kernels from issue 14's prior on the counts take ε per phase (an array)
    eps_reg = np.full(k, 1.0) if "eps_reg[j]" in pathlib.Path(mod.__file__).read_text() else 1.0
    mod.h_pass_sparse(d["indptr"], d["indices"], d["counts"], d["D"], d["D"].sum(axis=0),
                      Ht_in, 0, Ht_out, d["inv_scale"], mu, eps_reg, lam, adj[0], adj[1], colour,
                      phase, True, fixed, 1e-12, 1e-10, update_h, accumulate, want_loss,
                      acc, hsum, loss, (0,) * k, *extra)  # fmt: skip
    return acc.sum(axis=0), hsum.sum(axis=0), loss.sum(axis=0)


def one_iteration(mod, d, adj, colour, lam, red_black, want_loss):
    """The H step(s) of one iteration: one pass, or the two colours of a sweep."""
    Ht = d["Ht"]
    if not red_black:
        out = np.empty_like(Ht)
        r = call(mod, d, adj, colour, lam, -1, True, True, want_loss, Ht, out)
        return out, r
    out = Ht.copy()
    r0 = call(mod, d, adj, colour, lam, 0, True, True, want_loss, Ht, out)
    r1 = call(mod, d, adj, colour, lam, 1, True, True, want_loss, out, out)
    return out, tuple(a + b for a, b in zip(r0, r1, strict=True))


def loss_only(mod, d, adj, colour, lam):
    Ht = d["Ht"]
    return call(mod, d, adj, colour, lam, -1, False, False, True, Ht, Ht)


def reldiff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def fastest(f, repeat):
    """Fastest of ``repeat`` calls: wall time, or this process's CPU time with ``--cpu`` (one
    numba thread, NUMBA_NUM_THREADS=1: less sensitive to a loaded machine)."""
    clock = time.process_time if CPU_TIME else time.perf_counter
    best = np.inf
    for _ in range(repeat):
        t = clock()
        f()
        best = min(best, clock() - t)
    return best


CPU_TIME = False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", nargs="*", default=list(SHAPES))
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--fit", action="store_true", help="whole 64² fits, old vs new kernels")
    ap.add_argument("--fit512", action="store_true", help="whole 512² × 4096 fits at 1 count/px")
    ap.add_argument("--baseline", default="e17524e",
                    help="git revision whose esmpy_hs/nmf/_kernels.py is the baseline")  # fmt: skip
    ap.add_argument("--cpu", action="store_true",
                    help="CPU time of the process instead of wall time (use one numba thread)")
    args = ap.parse_args()
    global old, CPU_TIME
    CPU_TIME = args.cpu
    old = load_baseline(args.baseline)
    if args.fit:
        compare_fits()
        return
    if args.fit512:
        compare_512()
        return
    print(f"numba threads {numba.get_num_threads()}")
    for name in args.shape:
        s = SHAPES[name]
        d = make(s["rows"], s["cols"], s["n"], s["dose"])
        adj = grid_adjacency((s["rows"], s["cols"]))
        colour = grid_colouring((s["rows"], s["cols"])) if s["red_black"] else np.zeros(0, np.uint8)
        nnz = d["indptr"][-1]
        empty = float(np.mean(np.diff(d["indptr"]) == 0))
        print(f"\n{name}: {d['p']} px × {d['n']} ch, {nnz / d['p']:.1f} nonzeros/px, "
              f"{100 * empty:.0f} % empty pixels, λ = {s['lam']}, red-black {s['red_black']}")
        run_shape(d, adj, colour, s["lam"], s["red_black"], args.repeat)


def run_shape(d, adj, colour, lam, red_black, repeat):
    """Time the three cases of one shape, old and new kernels alternated."""
    cases = {
        "pass": lambda m: one_iteration(m, d, adj, colour, lam, red_black, False),
        "pass+loss": lambda m: one_iteration(m, d, adj, colour, lam, red_black, True),
        "loss only": lambda m: loss_only(m, d, adj, colour, lam),
    }
    for case, f in cases.items():
        ro, rn = f(old), f(new)  # compile and compare
        if case == "loss only":
            diffs = [reldiff(x, y) for x, y in zip(rn, ro, strict=True)]
        else:
            diffs = [reldiff(rn[0], ro[0])]
            diffs += [reldiff(x, y) for x, y in zip(rn[1], ro[1], strict=True)]
        t_old, t_new = [], []
        for _ in range(2):  # alternate, to share the load's drift
            t_old.append(fastest(lambda f=f: f(old), repeat))
            t_new.append(fastest(lambda f=f: f(new), repeat))
        to, tn = min(t_old), min(t_new)
        print(f"  {case:10s} old {1e3 * to:8.2f} ms  new {1e3 * tn:8.2f} ms  "
              f"ratio {tn / to:.3f}   max rel diff {max(diffs):.2e}")


def compare_fits(doses=(1.0, 3.0, 293.0), shape=(64, 64), seed=0):
    """Whole default fits (``SmartNMF``, k = 3, a known G) of synthetic 64² maps with the
    baseline kernels and with this tree's, in one process: iterations and the largest
    differences of the answers (``python benchmarks/bench_pass.py --fit``)."""
    import sys

    from esmpy_hs.nmf import SmartNMF, _solver

    sys.path.insert(0, str(_HERE.parent / "tests" / "nmf"))
    from conftest import synthetic

    for dose in doses:
        rng = np.random.default_rng(seed)
        G, W, H = synthetic(rng, n=300, shape=shape, k=3, n_peaks=10)
        m = G @ W @ H
        Y = rng.poisson(dose * m / m.sum(axis=0).mean()).T  # pixels × channels
        res = {}
        for name, mod in (("old", old), ("new", new)):
            _solver._kernels = mod
            est = SmartNMF(G, 3, shape_2d=shape, random_state=0, progress=False)
            t = time.perf_counter()
            est.fit(Y)
            res[name] = (est.n_iter_, est.components_, est.H_, time.perf_counter() - t)
        _solver._kernels = new
        (io, Wo, Ho, to), (i_n, Wn, Hn, tn) = res["old"], res["new"]
        print(f"dose {dose:6.1f}/px ({100 * np.mean(Y.sum(axis=1) == 0):.0f} % empty, "
              f"λ = {est.lambda_L_ if hasattr(est, 'lambda_L_') else '?'}): iterations old "
              f"{io} new {i_n}; max |ΔH| {np.abs(Ho - Hn).max():.2e}, max rel Δspectra "
              f"{reldiff(Wn, Wo):.2e}; fit {to:.2f} s → {tn:.2f} s (one run each)")


def compare_512(rounds=2, folder="/tmp/esmpy_bench"):
    """Whole ``smart_nmf(s, 3)`` fits of ``bench_coarse.py``'s ``mem512`` map (512² × 4096, 1
    count/px), baseline and new kernels alternated in one process (``--fit512``)."""
    import sys
    import warnings

    sys.path.insert(0, str(_HERE))
    import bench_coarse as bc
    import bench_iterations as bi

    from esmpy_hs.nmf import _solver

    warnings.filterwarnings("ignore", message="Importing `")
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    s, spectra, maps, kw = bc.load_map("mem512", pathlib.Path(folder))
    ests = {}
    for _ in range(rounds):
        for name, mod in (("old", old), ("new", new)):
            _solver._kernels = mod
            est, wall = bi.fit(s, kw)
            fit_s = est.setup_time_ + float(np.sum(est.iteration_times_))
            angles, mse = bi.against_truth(est, spectra, maps, *bi.channels(s))
            print(f"  {name}: iterations {est.n_iter_}+{est.final_iter_}, fit {fit_s:.1f} s "
                  f"(set-up {est.setup_time_:.1f} s, median iteration "
                  f"{1e3 * np.median(est.iteration_times_):.0f} ms), smart_nmf {wall:.1f} s, "
                  f"truth {', '.join(f'{a:.2f}' for a in angles)}° MSE {mse:.5f}", flush=True)
            ests[name] = est
    _solver._kernels = new
    a, m = bi.between(ests["new"], ests["old"])
    print(f"  new vs old: {a:.3g}°, map MSE {m:.2e}")


if __name__ == "__main__":
    main()

