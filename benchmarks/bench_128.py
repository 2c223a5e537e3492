"""The 128² target of issue 18: default ``decomposition`` fits end to end, with a switch
measured in one process (alternated, fastest of ``--repeat`` rounds).

Maps (``--maps``): ``paper_N293_s1`` (128 × 128 × 1980, 293 counts/px, the other simulator's map
in ``../shared/data/independent/``, fitted as loaded, like the first version of this benchmark)
and the reference sample at 293 and 18 counts/px (``ref293_s0``, ``ref18_s0``, see
``bench_iterations.load``).

Switches (``--switch``):

- ``blas``: the fit loops with one BLAS thread (:mod:`esmpy_hs.nmf._blas`, the default) or
  with the BLAS libraries' own threads (before);
- ``pass``: the pass's sweeps and the step after it (issue 18, second round):
  :data:`esmpy_hs.nmf._kernels.PAIRED_COUNTS` (the ratio sweep takes a pixel's counts two
  at a time), :data:`esmpy_hs.nmf._kernels.UNROLLED_SIMPLEX` (the H step's simplex solve
  compiled for the pass's k; both read at compile time: off runs a copy of this tree's
  ``_kernels.py`` with them False) and :data:`esmpy_hs.nmf._solver.COMPILED_BLOCK_SUM` (the
  blocks' ``R Hᵀ`` summed in compiled code), all on or all off;
- ``kernels``: this tree's compiled passes against those of ``--baseline REV``
  (``esmpy_hs/nmf/_kernels.py`` of that revision, the rest of the fit this tree's; issue 18,
  fourth round: :data:`esmpy_hs.nmf._kernels.FLAT_ROWS` and
  :data:`esmpy_hs.nmf._kernels.BATCHED_SOLVE` against 52be320);
- ``active``: :data:`esmpy_hs.nmf._solver.ACTIVE_SET` (the H step holds the pixels whose
  abundances stopped moving, between full sweeps; issue 18, third round) on or off;
- ``loop``: the main loop's work outside the plain pass (issue 18):
  :data:`esmpy_hs.nmf._solver.FUSED_EXTRAPOLATION` (H extrapolated inside the pass),
  :data:`esmpy_hs.nmf._solver.FOLD_CLOSING_LOSS` (the old G's F at an absorption refresh
  evaluated by the next pass) and :data:`esmpy_hs.nmf._updates.BATCHED_PRODUCTS` (G·W, Gᵀ·(R Hᵀ)
  and 1ᵀD as BLAS products) and :data:`esmpy_hs.physics._response.GROUPED_LINES` (the
  refreshed G summed per column), all on (after) or all off (before); off also runs the
  compiled passes of ``--baseline REV`` (``esmpy_hs/nmf/_kernels.py`` of that revision, default
  ba42866, before issue 18's loop work: without :data:`esmpy_hs.nmf._kernels.SCALAR_SUMS`,
  which is read at compile time), so "before" is the loop and the passes of that revision.

Per fit: the wall time of ``decomposition``, the main loop's iterations and its seconds per
iteration (the longest loop of the fit; also its CPU seconds, all threads of the process:
with ``NUMBA_NUM_THREADS=1`` the work per iteration, which a loaded machine disturbs less),
the median plain pass over the counts (H step + R Hᵀ), the 1-minute load average of the
machine; and per map the largest difference of the answer between the two settings (spectral
angle in degrees over the components, the largest per-phase MSE of the abundance maps, the
iterations).

Run from the repository root: ``PYTHONPATH=. nice -n 10 python benchmarks/bench_128.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_iterations import channels, load

import esmpy_hs.nmf._blas as blas
import esmpy_hs.nmf._fit as fit
import esmpy_hs.nmf._solver as solver
import esmpy_hs.nmf._updates as updates
import esmpy_hs.physics._response as response

_record: dict[str, list] = {"loop": [], "pass": []}
#: the module switches of ``--switch loop`` (all set together)
LOOP_SWITCHES = ("FUSED_EXTRAPOLATION", "FOLD_CLOSING_LOSS")


class _OldKernels:
    """The kernels of a revision before the fused-pass arguments (``Hy_out, beta_x, D2,
    colsum2``), called with those dropped (they are empty when the loop switches are off)."""

    def __init__(self, module) -> None:
        self.module = module

    def __getattr__(self, name: str):
        f = getattr(self.module, name)
        if name.startswith("h_pass_"):
            n = f.py_func.__code__.co_argcount
            return lambda *args: f(*args[:n])
        return f


_KERNELS = {"new": solver._kernels, "old": None}
#: the compile-time switches of ``--switch pass`` (False in the "before" copy of the kernels)
PASS_KERNEL_SWITCHES = ("PAIRED_COUNTS", "UNROLLED_SIMPLEX")


def load_variant(**flags: bool):
    """This tree's ``esmpy_hs/nmf/_kernels.py`` with module switches set to ``flags`` (read at
    compile time), imported as a module of its own."""
    import importlib.util
    import re
    import tempfile

    text = Path(solver._kernels.__file__).read_text()
    for name, value in flags.items():
        text, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, flags=re.M)
        if n != 1:
            raise ValueError(f"no switch {name} in _kernels.py")
    path = Path(tempfile.mkdtemp()) / "_kernels_variant.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("_kernels_variant", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_switch(name: str, on: bool) -> None:
    if name == "blas":
        blas.ENABLED = on
    elif name == "pass":
        solver._kernels = _KERNELS["new"] if on else _KERNELS["old"]
        solver.COMPILED_BLOCK_SUM = on
    elif name == "active":
        solver.ACTIVE_SET = on
    elif name == "kernels":
        solver._kernels = _KERNELS["new"] if on else _KERNELS["old"]
    else:
        if _KERNELS["old"] is not None:
            solver._kernels = _KERNELS["new"] if on else _KERNELS["old"]
        for attr in LOOP_SWITCHES:
            setattr(solver, attr, on)
        updates.BATCHED_PRODUCTS = on
        response.GROUPED_LINES = on


def _timed_iterate(orig):
    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), time.process_time()
        r = orig(*args, **kwargs)
        if kwargs.get("losses", True):  # not the H-only warm-up
            _record["loop"].append((time.perf_counter() - t, r.n_iter, time.process_time() - c))
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
    loop, n_iter, cpu = max(_record["loop"], key=lambda x: x[1])  # the main loop
    W = np.asarray(t.learning_results.factors, dtype=float)
    H = np.asarray(t.learning_results.loadings, dtype=float)
    return dict(wall=wall, n_iter=n_iter, per_iter=loop / max(n_iter, 1),
                cpu_per_iter=cpu / max(n_iter, 1),
                pass_ms=1e3 * float(np.median(_record["pass"])), W=W, H=H,
                channels=channels(t),
                load=os.getloadavg()[0])  # fmt: skip


def angle(a, b):
    a = a / np.linalg.norm(a, axis=0)
    b = b / np.linalg.norm(b, axis=0)
    return float(np.degrees(np.arccos(np.clip(np.sum(a * b, axis=0), -1, 1))).max())


def map_mse(a, b):
    """Largest per-phase MSE of the abundance fractions (loadings: pixels × k)."""
    fa = a / np.maximum(a.sum(axis=1, keepdims=True), 1e-300)
    fb = b / np.maximum(b.sum(axis=1, keepdims=True), 1e-300)
    return float(((fa - fb) ** 2).mean(axis=0).max())


def against_truth(s, spectra, maps, r) -> tuple[list[float], float]:
    """Spectral angle of every true phase with its matched component (degrees, on the fitted
    channels) and the mean map MSE (:mod:`esmpy_hs.metrics`) of a fit's answer ``r``."""
    from esmpy_hs.metrics import map_mse as truth_mse
    from esmpy_hs.metrics import match_phases, spectral_angle

    c0, c1 = r["channels"]
    comp = r["W"].T[:, c0:c1] if r["W"].shape[0] == s.data.shape[-1] else r["W"].T
    H = r["H"].T
    m = match_phases(spectra[:, c0:c1], comp, maps, H)
    perm = list(m.permutation)
    angles = [float(spectral_angle(spectra[i, c0:c1], comp[j])) for i, j in enumerate(perm)]
    return angles, float(truth_mse(maps, H[perm], renormalise=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maps", nargs="*", default=["paper_N293_s1", "ref293_s0", "ref18_s0"])
    ap.add_argument("--switch", choices=("blas", "loop", "pass", "active", "kernels"),
                    default="loop")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default="ba42866",
                    help="revision whose compiled passes run with --switch loop or kernels off "
                         "('' : this tree's)")  # fmt: skip
    ap.add_argument("--active-share", type=float, default=None,
                    help="ACTIVE_SHARE of the active set (default: _solver's)")  # fmt: skip
    ap.add_argument("--active-every", type=int, default=None,
                    help="ACTIVE_FULL_EVERY of the active set (default: _solver's)")  # fmt: skip
    args = ap.parse_args()
    if args.active_share is not None:
        solver.ACTIVE_SHARE = args.active_share
    if args.active_every is not None:
        solver.ACTIVE_FULL_EVERY = args.active_every
    if args.switch == "loop" and args.baseline:
        from bench_pass import load_baseline

        _KERNELS["old"] = _OldKernels(load_baseline(args.baseline))
    if args.switch == "kernels":
        from bench_pass import load_baseline

        _KERNELS["old"] = load_baseline(args.baseline)
    if args.switch == "pass":
        _KERNELS["old"] = load_variant(**dict.fromkeys(PASS_KERNEL_SWITCHES, False))
    warnings.simplefilter("ignore")
    fit.iterate = _timed_iterate(fit.iterate)
    solver.h_pass = _timed_pass(solver.h_pass)
    for name in args.maps:
        s, spectra, maps, _ = load(name)
        one_fit(s)  # compile / warm the caches
        best: dict[bool, dict] = {}
        cpu: dict[bool, float] = {}
        print(f"\n{name}, switch {args.switch}", flush=True)
        for rnd in range(args.repeat):
            for on in (False, True):
                set_switch(args.switch, on)
                r = one_fit(s)
                print(f"round {rnd} {args.switch}={on}: {r['wall']:.2f} s, {r['n_iter']} "
                      f"iterations, {1e3 * r['per_iter']:.2f} ms/iteration (CPU "
                      f"{1e3 * r['cpu_per_iter']:.2f} ms), pass median "
                      f"{r['pass_ms']:.2f} ms, load {r['load']:.2f}", flush=True)  # fmt: skip
                if on not in best or r["per_iter"] < best[on]["per_iter"]:
                    best[on] = r
                cpu[on] = min(cpu.get(on, np.inf), r["cpu_per_iter"])
        old, new = best[False], best[True]
        for on in (False, True) if spectra is not None else ():  # a real map has no truth
            angles, mse = against_truth(s, spectra, maps, best[on])
            print(f"{args.switch}={on} against the truth: "
                  f"{', '.join(f'{a:.3f}' for a in angles)}° (mean {np.mean(angles):.3f}°), "
                  f"map MSE {mse:.6f}")  # fmt: skip
        print(f"fastest: before {old['wall']:.2f} s ({1e3 * old['per_iter']:.2f} ms/it), "
              f"after {new['wall']:.2f} s ({1e3 * new['per_iter']:.2f} ms/it), "
              f"ratio per iteration {new['per_iter'] / old['per_iter']:.3f}; CPU time per "
              f"iteration (fastest) {1e3 * cpu[False]:.2f} → {1e3 * cpu[True]:.2f} ms, ratio "
              f"{cpu[True] / cpu[False]:.3f}")
        print(f"answer: largest angle {angle(old['W'], new['W']):.3g}°, "
              f"map MSE {map_mse(old['H'], new['H']):.3g}, "
              f"loadings max |Δ| {np.abs(old['H'] - new['H']).max():.3g}, "
              f"iterations {old['n_iter']} → {new['n_iter']}")


if __name__ == "__main__":
    main()
