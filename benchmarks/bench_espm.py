"""Seconds per iteration of SmartNMF against espm 1.1.3's SmoothNMF and scikit-learn, one process.

Not a test (issue 18): ``python benchmarks/bench_espm.py`` fits one map with three estimators in
one process, alternating them over ``--rounds`` rounds and keeping the fastest round of each,
and prints the ratios. Run it beside nothing heavy (``nice -n 10`` on a shared machine) and
read the load averages it prints before and after.

Setup. espm is never a dependency of esmpy-hs: it lives in a venv of its own. Its wheel pins
hyperspy 2.2.0, exspy 0.3.1, PyQt5 and the HyperSpy GUIs, none of which its estimator needs;
installed without its dependencies, ``espm.estimators.SmoothNMF`` (and ``espm.models``) import
with the hyperspy 2.5.0 / exspy 0.3.2 that esmpy-hs needs::

    python3.11 -m venv /work/venv-espm
    /work/venv-espm/bin/pip install -e ".[test]"    # esmpy-hs, its dependencies, scikit-learn
    /work/venv-espm/bin/pip install --no-deps espm==1.1.3
    nice -n 10 /work/venv-espm/bin/python benchmarks/bench_espm.py

(run from the repository root; ``.[test]`` brings scikit-learn, which espm imports). Without
espm the script stops with this recipe.

The problem, the same for all three:

* Data: ``shared/data/independent/paper_N293_s1`` (128 × 128 × 1980, 293 counts/px, made by
  espm's own simulator; ``benchmarks/bench_iterations.py``'s ``load``), k = 3, the counts of the
  fitted channels as a dense array.
* G: esmpy-hs's physics model of the map (:func:`esmpy_hs.signals._model.build_model` from the
  file's metadata, the simulator's width law ``Detector(fwhm_model="linear")`` as
  ``bench_iterations`` fits these maps), 12 element columns and 2 continuum columns, with the
  absorption of the average absorber (all listed elements in equal fractions:
  ``model.G_for_phases``), **held fixed** in both fits. Our G rather than espm's own EDXS model
  because then both fits solve the same problem with the same matrix; fixed because espm takes
  one G for all phases (its model only refreshes the continuum columns), and the per-phase
  absorption refresh of the signal-level fit is not part of the pass being timed.
* espm: ``SmoothNMF(lambda_L=1, mu=0.004, epsilon_reg=0.01, simplex_W=True, normalize=True,
  shape_2d=(128, 128))`` (the paper's settings, ``shared/notes/validation.md``). G is handed
  over as a minimal :class:`espm.models.base.PhysicalModel` whose ``NMF_update`` returns the
  fixed G and whose ``NMF_simplex`` lists the element rows, so the W simplex covers the element
  rows only, as with espm's own model (a plain array would put the continuum rows in the
  simplex too). As shipped, espm's loop evaluates its loss after every iteration (and again
  after every third, where a physics model may have changed G).
* esmpy-hs: :class:`esmpy_hs.nmf.SmartNMF` with its defaults (H simplex, μ = 0.01, λ from the
  dose, momentum, ``init="auto"``) on the same counts and G, ``simplex_rows`` = the element rows.
* scikit-learn: ``NMF(solver="mu", beta_loss="kullback-leibler")`` on the counts as a CSR
  matrix (``bench_nmf.time_sklearn``; no G, no regularisation).

Timing. SmartNMF: the median of per-iteration time stamps (callback) over ``--iter`` iterations
with ``tol=0``, as ``bench_nmf.py`` takes it (its loss every 10 iterations falls outside the
median; the mean is printed as well); also with the H step's active set off
(:data:`esmpy_hs.nmf._solver.ACTIVE_SET`, issue 18's third round: it holds the pixels that stopped
moving, most of them late in a fit, so the first ``--iter`` iterations gain little; the quality run
below prints the default fit's own iterations). espm has no callback: its ``_iteration`` method is
wrapped on the instance to stamp the start and end of every update, giving "update only" (median of
the update's duration) and "as shipped" (mean interval between the starts of successive iterations,
so its loss evaluations, copies and convergence bookkeeping are in, the first iteration left out);
both from a start of espm's own (its default initialisation, computed once, outside the timing).
scikit-learn: the difference of fits of ``1 + --sklearn-iter`` and 1 iterations. Each estimator's
fastest round is kept: on a shared machine noise only ever adds time.

``--baseline REV`` also times SmartNMF, in the same rounds, with the compiled passes of git
revision REV (``esmpy_hs/nmf/_kernels.py`` of REV read with ``git show``, as
``bench_pass.py --baseline`` does; the rest of the loop is this tree's), and prints the ratio.

Quality: SmartNMF's default fit end to end (start, stopping rules, final steps, and its main loop's
seconds per iteration), and (unless ``--espm-budget 0``) espm from its own initialisation for the
number of iterations that fit in ``--espm-budget`` seconds at its measured as-shipped rate, both
against the map's truth: the spectral angle of every true phase with its matched component and the
mean map MSE (estimated maps renormalised to sum to 1 per pixel; :mod:`esmpy_hs.metrics`).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

MAP = "paper_N293_s1"
K = 3
#: the paper's settings for espm (shared/notes/validation.md)
ESPM_SETTINGS = {"lambda_L": 1.0, "mu": 0.004, "epsilon_reg": 0.01, "simplex_W": True,
                 "simplex_H": False, "normalize": True}  # fmt: skip

SETUP = """\
espm is not importable in this Python ({exe}): {err}
bench_espm.py needs espm 1.1.3 in a separate venv (never in the project's own):
    python3.11 -m venv /work/venv-espm
    /work/venv-espm/bin/pip install -e ".[test]"
    /work/venv-espm/bin/pip install --no-deps espm==1.1.3
then, from the repository root:
    nice -n 10 /work/venv-espm/bin/python benchmarks/bench_espm.py"""


def import_espm():
    """espm's SmoothNMF and PhysicalModel, or exit with the set-up recipe."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import espm
            from espm.estimators import SmoothNMF
            from espm.models.base import PhysicalModel
    except Exception as exc:  # ImportError, or a dependency that fails on import
        err = f"{type(exc).__name__}: {exc}"
        raise SystemExit(SETUP.format(exe=sys.executable, err=err)) from None
    return espm, SmoothNMF, PhysicalModel


def fixed_model_class(PhysicalModel):
    """A PhysicalModel of espm that hands over a fixed G and the rows of its W simplex."""

    class FixedG(PhysicalModel):
        def __init__(self, G: np.ndarray, simplex_rows: np.ndarray) -> None:
            # espm's PhysicalModel.__init__ reads its line tables; nothing of it is needed here
            self.G = np.ascontiguousarray(G, dtype=np.float64)
            self.rows = [int(i) for i in np.flatnonzero(simplex_rows)]
            self.bkgd_in_G = False

        def generate_g_matr(self, *args, **kwargs):
            return self.G

        def generate_phases(self, *args, **kwargs):
            return None

        def NMF_initialize_W(self, D):
            return np.linalg.lstsq(self.G, D, rcond=None)[0].clip(min=0)

        def NMF_update(self, W=None):
            return self.G

        def NMF_simplex(self):
            return self.rows

    return FixedG


def problem():
    """Counts (pixels × channels), G, the simplex rows, the grid and the truth on the channels."""
    from bench_iterations import load

    from esmpy_hs.signals._model import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, spectra, maps, kw = load(MAP)
        model, (c0, c1), _ = build_model(s, detector=kw["detector"])
    G = model.G_for_phases(np.ones((model.n_columns, 1)))[0]
    shape = tuple(s.data.shape[:2])
    X = np.ascontiguousarray(s.data.reshape(-1, s.data.shape[-1])[:, c0:c1])
    return X, G, np.asarray(model.simplex_mask), shape, spectra[:, c0:c1], maps, model


def our_estimator(G, mask, shape, **kw):
    from esmpy_hs.nmf import SmartNMF

    return SmartNMF(G, K, simplex_rows=mask, shape_2d=shape, progress=False, **kw)


def time_ours(X, G, mask, shape, n_iter: int, active: bool = True,
              kernels=None) -> tuple[float, float]:  # fmt: skip
    """Median and mean seconds per iteration of one default fit run for ``n_iter`` iterations
    (``active``: the H step's active set, :data:`esmpy_hs.nmf._solver.ACTIVE_SET`;
    ``kernels``: a module of compiled passes used instead of :mod:`esmpy_hs.nmf._kernels`,
    see ``--baseline``)."""
    from esmpy_hs.nmf import _solver

    own = _solver._kernels
    _solver.ACTIVE_SET = active
    if kernels is not None:
        _solver._kernels = kernels
    stamps: list[float] = []
    est = our_estimator(G, mask, shape, max_iter=n_iter, tol=0.0,
                        callback=lambda *_: stamps.append(time.perf_counter()))  # fmt: skip
    try:
        est.fit(X)
    finally:
        _solver.ACTIVE_SET = True
        _solver._kernels = own
    d = np.diff(stamps)
    return float(np.median(d)), float(d.mean())


def espm_estimator(SmoothNMF, FixedG, G, mask, shape, n_iter: int):
    return SmoothNMF(n_components=K, G=FixedG(G, mask), shape_2d=shape, max_iter=n_iter,
                     no_stop_criterion=True, verbose=0, **ESPM_SETTINGS)  # fmt: skip


def stamped(est) -> list[tuple[float, float]]:
    """Wrap ``est._iteration`` on the instance: (start, end) of every update."""
    marks: list[tuple[float, float]] = []
    update = est._iteration

    def timed(W, H):
        t0 = time.perf_counter()
        out = update(W, H)
        marks.append((t0, time.perf_counter()))
        return out

    est._iteration = timed
    return marks


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with espm's prints and warnings silenced."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def espm_start(SmoothNMF, FixedG, Xe, G, mask, shape):
    """espm's own initialisation, in the units its fit starts from (normalised data)."""
    est = espm_estimator(SmoothNMF, FixedG, G, mask, shape, 1)
    est._iteration = lambda W, H: (W, H)  # the start itself, no update
    quiet(est.fit, Xe)
    return est.W_ * est.norm_factor_, est.H_


def time_espm(SmoothNMF, FixedG, Xe, G, mask, shape, start, n_iter: int) -> tuple[float, float]:
    """Update-only median and as-shipped mean seconds per iteration over ``n_iter`` iterations."""
    est = espm_estimator(SmoothNMF, FixedG, G, mask, shape, n_iter)
    marks = stamped(est)
    W0, H0 = start
    quiet(est.fit, Xe, W=W0.copy(), H=H0.copy())
    m = np.asarray(marks)
    update = float(np.median(m[:, 1] - m[:, 0]))
    shipped = float(np.diff(m[1:, 0]).mean())  # the first iteration sets espm's step up
    return update, shipped


def against_truth(spectra, maps, components, H) -> tuple[list[float], float]:
    from esmpy_hs.metrics import map_mse, match_phases, spectral_angle

    m = match_phases(spectra, components, maps, H)
    perm = list(m.permutation)
    angles = [float(spectral_angle(spectra[i], components[j])) for i, j in enumerate(perm)]
    return angles, float(map_mse(maps, H[perm], renormalise=True))


def fmt(angles: list[float]) -> str:
    return f"{', '.join(f'{a:.2f}' for a in angles)}° (mean {np.mean(angles):.2f}°)"


def load_avg() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iter", type=int, default=60, help="SmartNMF iterations per timing fit")
    ap.add_argument("--espm-iter", type=int, default=12, help="espm iterations per timing fit")
    ap.add_argument("--sklearn-iter", type=int, default=6)
    ap.add_argument("--espm-budget", type=float, default=180.0,
                    help="seconds of espm iterations for the quality run (0: no quality runs)")
    ap.add_argument("--baseline", default="",
                    help="also time SmartNMF with the compiled passes of this git revision "
                         "(esmpy_hs/nmf/_kernels.py read with git show, bench_pass.py) in the "
                         "same rounds")  # fmt: skip
    args = ap.parse_args(argv)
    baseline = None
    if args.baseline:
        from bench_pass import load_baseline

        baseline = load_baseline(args.baseline)
    espm, SmoothNMF, PhysicalModel = import_espm()
    FixedG = fixed_model_class(PhysicalModel)

    import hyperspy
    import numba
    import sklearn
    from bench_nmf import time_sklearn

    import esmpy_hs

    exspy_version = "?"
    try:
        from importlib.metadata import version

        exspy_version = version("exspy")
    except Exception:  # pragma: no cover
        pass
    versions = (f"python {platform.python_version()}, numpy {np.__version__}, numba "
                f"{numba.__version__}, hyperspy {hyperspy.__version__}, exspy {exspy_version}, "
                f"espm {espm.__version__}, scikit-learn {sklearn.__version__}, esmpy-hs "
                f"{esmpy_hs.__version__}")  # fmt: skip
    print(f"{versions}; {os.cpu_count()} CPUs; {load_avg()}", flush=True)

    X, G, mask, shape, spectra, maps, model = problem()
    Xe = np.ascontiguousarray(X.T, dtype=np.float64)  # espm: channels × pixels, dense
    Xs = sp.csr_matrix(X.astype(np.float64))  # scikit-learn: pixels × channels, sparse
    print(f"{MAP}: {X.shape[0]} pixels × {X.shape[1]} channels, {X.sum() / X.shape[0]:.1f} "
          f"counts/px, {Xs.nnz} nonzeros; G {G.shape[0]} × {G.shape[1]} "
          f"({', '.join(model.labels)}), k = {K}", flush=True)  # fmt: skip

    t = time.perf_counter()
    time_ours(X, G, mask, shape, 5)  # compiles the kernels (numba cache) and warms the caches
    if baseline is not None:
        time_ours(X, G, mask, shape, 5, kernels=baseline)
    print(f"warm-up fit of SmartNMF: {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    start = espm_start(SmoothNMF, FixedG, Xe, G, mask, shape)
    print(f"espm's initialisation: {time.perf_counter() - t:.1f} s", flush=True)

    best = {"ours": (np.inf, np.inf), "espm": (np.inf, np.inf), "sklearn": np.inf,
            "off": (np.inf, np.inf), "base": (np.inf, np.inf)}  # fmt: skip
    for r in range(args.rounds):
        if baseline is not None:
            base = time_ours(X, G, mask, shape, args.iter, kernels=baseline)
            best["base"] = min(best["base"], base)
            print(f"round {r + 1}: SmartNMF with the passes of {args.baseline} "
                  f"{1e3 * base[0]:.2f} ms/iter (median; mean {1e3 * base[1]:.2f})",
                  flush=True)  # fmt: skip
        off = time_ours(X, G, mask, shape, args.iter, active=False)
        ours = time_ours(X, G, mask, shape, args.iter)
        es = time_espm(SmoothNMF, FixedG, Xe, G, mask, shape, start, args.espm_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = time_sklearn(Xs, 1, 1 + args.sklearn_iter)
        best["ours"] = min(best["ours"], ours)
        best["off"] = min(best["off"], off)
        best["espm"] = min(best["espm"], es)
        best["sklearn"] = min(best["sklearn"], sk)
        print(f"round {r + 1}: SmartNMF {1e3 * ours[0]:.2f} ms/iter (median; mean "
              f"{1e3 * ours[1]:.2f}) | espm update {1e3 * es[0]:.1f}, as shipped "
              f"{1e3 * es[1]:.1f} ms/iter | scikit-learn {1e3 * sk:.1f} ms/iter | SmartNMF "
              f"without the active set {1e3 * off[0]:.2f} (mean {1e3 * off[1]:.2f}) | "
              f"{load_avg()}", flush=True)  # fmt: skip

    ours_med, ours_mean = best["ours"]
    es_update, es_shipped = best["espm"]
    sk = best["sklearn"]
    rows = (  # label, short label, seconds per iteration, target
        ("espm 1.1.3 SmoothNMF, as shipped", "espm as shipped", es_shipped, "  (target ≥ 60×)"),
        ("espm 1.1.3 SmoothNMF, update only", "espm update only", es_update, ""),
        ("scikit-learn NMF KL 'mu', sparse", "scikit-learn", sk, "  (target ≥ 40×)"),
    )
    print(f"\nfastest of {args.rounds} rounds, seconds per iteration:")
    print(f"  {'esmpy-hs SmartNMF (defaults)':36s}{1e3 * ours_med:8.2f} ms (median; mean "
          f"{1e3 * ours_mean:.2f} ms)")  # fmt: skip
    print(f"  {'  the same, active set off':36s}{1e3 * best['off'][0]:8.2f} ms (median; mean "
          f"{1e3 * best['off'][1]:.2f} ms; on/off {ours_med / best['off'][0]:.3f}, "
          f"{ours_mean / best['off'][1]:.3f})")  # fmt: skip
    if baseline is not None:
        b_med, b_mean = best["base"]
        print(f"  {'  the same, passes of ' + args.baseline:36s}{1e3 * b_med:8.2f} ms (median; "
              f"mean {1e3 * b_mean:.2f} ms; this tree/it {ours_med / b_med:.3f}, "
              f"{ours_mean / b_mean:.3f})")  # fmt: skip
    for name, _, sec, target in rows:
        print(f"  {name:36s}{1e3 * sec:8.1f} ms  → {sec / ours_med:5.1f}×{target}")
    against_mean = ", ".join(f"{short} {sec / ours_mean:.1f}×" for _, short, sec, _ in rows)
    print(f"  (against SmartNMF's mean instead: {against_mean})", flush=True)

    print("\nquality against the map's truth (angles per true phase, mean map MSE):", flush=True)
    est = our_estimator(G, mask, shape)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    seconds = time.perf_counter() - t
    angles, mse = against_truth(spectra, maps, est.components_, est.H_)
    times = np.asarray(est.iteration_times_)
    print(f"  SmartNMF default fit: {est.n_iter_} iterations ({est.stop_reason_}), "
          f"{seconds:.1f} s end to end: {fmt(angles)}, MSE {mse:.5f}; its main loop "
          f"{1e3 * np.median(times):.2f} ms per iteration (median; mean "
          f"{1e3 * times.mean():.2f} ms: scikit-learn {sk / times.mean():.1f}×)",
          flush=True)  # fmt: skip
    if args.espm_budget <= 0:
        print(load_avg())
        return
    n_budget = max(1, int(args.espm_budget / es_shipped))
    est_e = espm_estimator(SmoothNMF, FixedG, G, mask, shape, n_budget)
    t = time.perf_counter()
    quiet(est_e.fit, Xe)
    seconds = time.perf_counter() - t
    comp = (est_e.G_ @ est_e.W_).T
    angles, mse = against_truth(spectra, maps, comp, est_e.H_)
    print(f"  espm, {args.espm_budget:.0f} s budget: {est_e.n_iter_} iterations from its own "
          f"start, {seconds:.1f} s end to end: {fmt(angles)}, MSE {mse:.5f}",
          flush=True)  # fmt: skip
    print(load_avg())


if __name__ == "__main__":
    main()
