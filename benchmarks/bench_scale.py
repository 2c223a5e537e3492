"""Time to a result at scale (issue 18): a default fit against the fit before the faster schedule,
in one process, with the quality reached and the peak memory.

Not a test: ``python benchmarks/bench_scale.py CASE`` and read the figures. Cases:

``memory512``
    A 512 × 512 × 4096 map of the reference three-phase sample at ``--dose`` counts per pixel
    (default 1), in memory as uint16 (the reference spectra resampled on 4096 channels of the
    same energy range, the reference maps on the 512² grid; drawn in a child process so the
    drawing does not count in the peak memory). The baselines of ``--baselines`` (default
    ``before,simultaneous``), then the default fit, one after the other in this process:
    *before* (``angle_tol=0, momentum=0`` and every pixel moving at once: the relative-objective
    rule alone, plain updates), *simultaneous* (the defaults but every pixel moving at once,
    ``esmpy_hs.nmf._plan.RED_BLACK = False``: the default before the red-black sweep) and
    *default*. Target of issue 18: the default fit ≤ 10 s; peak memory ≤ 3 × the counts as
    uint16. ``--size`` and ``--dose`` draw other maps (e.g. 256² for a quicker run).
``lazy1024``
    The ``size × size × 1980`` map of :mod:`bench_lazy` (default 1024², 290 counts per pixel,
    written once to ``--dir``), read lazily (``hs.load(lazy=True)``) and fitted with the
    defaults, ``max_iter=--max-iter``. Target of issue 18: ≤ 120 s and ≤ 4 GB peak. With
    ``--max-iter`` below what the fit needs, the figures are the set-up time, the seconds per
    iteration and the iterations run; ``--before`` fits with the old settings too (slow);
    ``--two-reads`` first fits with the defaults but the summed spectrum read apart
    (``esmpy_hs.signals._lazy.ONE_READ = False``: a second read of the whole file, the
    set-up before the single read); ``--joint-off`` first fits with the defaults but without
    the binned level of the joint fit (``esmpy_hs.nmf._plan.COARSE_JOINT = False``).

``--refine-blocks N`` (both cases) sets ``esmpy_hs.nmf._init.MAX_REFINE_BLOCKS``, the most binned
blocks the start refines W on (a huge N: every block, the start before that bound).

Printed per fit: wall time of ``decomposition`` (s; it includes the calibration before the
fit and the model check after it), the fit itself (``fit``: set-up + iterations of the
estimator), set-up time (compaction of the counts, start, warm-up), iterations (main loop + refit
of H at the composition bound), median seconds per iteration, stop reason, the angle of each
true phase with its matched component (degrees, fitted channels), the mean map MSE against the
truth, the distance to the *before* fit when there is one (largest angle, largest per-phase map
MSE), and the peak memory: the peak of NumPy allocations during the fit (``tracemalloc``) and
the peak resident size of the process so far (``ru_maxrss``). Every :data:`REPORT` iterations
a line gives the time since the fit began (a user callback; the absorption refresh still
replaces G), so a run stopped early still gives its set-up time and pace.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

import esmpy_hs.nmf._plan as plan_module

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N_CH_512 = 4096
#: iterations between two progress lines of a fit
REPORT = 100


def resampled_spectra(n_channels: int):
    """The reference spectra (3 × 1980) on ``n_channels`` channels of the same energy range:
    (spectra, offset keV, scale keV). The density per keV is interpolated, so each spectrum's
    total stays."""
    from esmpy_hs.datasets import reference_sample, reference_spectra

    sp = reference_spectra()
    ax = reference_sample(shape=(2, 2)).axes_manager.signal_axes[0]
    old = ax.offset + ax.scale * (np.arange(sp.shape[1]) + 0.5)
    scale = ax.scale * sp.shape[1] / n_channels
    new = ax.offset + scale * (np.arange(n_channels) + 0.5)
    out = np.stack([np.interp(new, old, row) for row in sp]) * (scale / ax.scale)
    out *= (sp.sum(axis=1) / out.sum(axis=1))[:, None]
    return out, float(ax.offset), float(scale)


def draw_sparse(path: Path, size: int, dose: float, seed: int = 0) -> None:
    """Counts of the 512² map as (pixel, channel, count) triplets in ``path`` (.npz)."""
    from esmpy_hs.datasets import reference_maps

    spectra, _, _ = resampled_spectra(N_CH_512)
    maps = reference_maps((size, size)).reshape(3, -1)  # 3 × pixels
    rng = np.random.default_rng(seed)
    T = spectra.sum(axis=1)
    w = maps.T * T[None, :]
    lam = w.sum(axis=1)
    n = rng.poisson(dose * lam / lam.mean())
    pix = np.repeat(np.arange(n.size), n)
    wc = np.cumsum(w / lam[:, None], axis=1)
    phase = (rng.random(pix.size)[:, None] > wc[pix, :2]).sum(axis=1)
    ch = np.empty(pix.size, dtype=np.int64)
    for j in range(3):
        sel = phase == j
        cdf = np.cumsum(spectra[j]) / T[j]
        ch[sel] = np.minimum(np.searchsorted(cdf, rng.random(int(sel.sum()))), N_CH_512 - 1)
    key, cnt = np.unique(pix * N_CH_512 + ch, return_counts=True)
    np.savez(path, key=key, count=cnt, size=size)


def signal_512(path: Path):
    import hyperspy.api as hs

    from esmpy_hs.datasets import reference_sample

    z = np.load(path)
    size = int(z["size"])
    data = np.zeros(size * size * N_CH_512, dtype=np.uint16)
    data[z["key"]] = z["count"]
    data = data.reshape(size, size, N_CH_512)
    _, offset, scale = resampled_spectra(N_CH_512)
    s = hs.signals.Signal1D(data)
    ref = reference_sample(shape=(2, 2))
    s.metadata.add_dictionary(ref.metadata.as_dictionary())
    if s.metadata.has_item("ESMPY_truth"):
        del s.metadata.ESMPY_truth
    ax = s.axes_manager.signal_axes[0]
    ax.offset, ax.scale, ax.units, ax.name = offset, scale, "keV", "Energy"
    s.set_signal_type("EDS_ESMPY")
    return s


def truth(size: int, n_channels: int):
    from esmpy_hs.datasets import reference_maps, reference_spectra

    sp = reference_spectra() if n_channels == 1980 else resampled_spectra(n_channels)[0]
    return sp, reference_maps((size, size)).reshape(3, -1)


def fit_once(s, label: str, spectra, maps, before=None, **params):
    from bench_iterations import against_truth, between, channels

    t0 = time.perf_counter()

    def report(estimator, iteration, W, H):
        # a line every REPORT iterations: a run cut short still tells its pace
        if iteration % REPORT == 0 or iteration == 1:
            print(f"         iteration {iteration}: {time.perf_counter() - t0:.1f} s", flush=True)

    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = s.decomposition(algorithm="smart_nmf", output_dimension=3, return_info=True,
                              print_info=False, progress=False, callback=report,
                              **params)  # fmt: skip
    wall = time.perf_counter() - t0
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    angles, mse = against_truth(est, spectra, maps, *channels(s))
    it = np.asarray(getattr(est, "iteration_times_", []) or [np.nan])
    setup = getattr(est, "setup_time_", np.nan)
    line = (f"{label:8s} {wall:7.1f} s, fit {setup + np.nansum(it):.1f} s (set-up {setup:.1f} s) "
            f"iterations {est.n_iter_}+{est.final_iter_} ({est.stop_reason_}, "
            f"binned level {est.coarse_iter_}, "
            f"{est.n_restarts_} redone), median {1e3 * np.median(it):.0f} ms/iteration | truth "
            f"{', '.join(f'{a:.2f}' for a in angles)}°, map MSE {mse:.5f}")  # fmt: skip
    if before is not None:
        a, m = between(est, before[0])
        line += f" | vs before {a:.3f}°, MSE {m:.1e}, time ratio {wall / before[1]:.2f}"
    print(line)
    print(f"         peak NumPy allocations during the fit {traced / 2**30:.2f} GiB, "
          f"peak RSS of the process so far {rss:.2f} GiB", flush=True)  # fmt: skip
    return est, wall


def memory512(args) -> None:
    path = Path(args.dir) / f"counts_{args.size}_{N_CH_512}_{args.dose:g}.npz"
    if not path.exists():
        code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_scale as b; "
                f"b.draw_sparse(__import__('pathlib').Path({str(path)!r}), {args.size}, "
                f"{args.dose})")  # fmt: skip
        subprocess.run([sys.executable, "-c", code], check=True)
    s = signal_512(path)
    counts = int(s.data.sum())
    nbytes = s.data.nbytes
    print(f"{args.size}² × {N_CH_512}, {counts / args.size**2:.2f} counts/px, counts as uint16 "
          f"{nbytes / 2**30:.2f} GiB (3× = {3 * nbytes / 2**30:.2f} GiB)")  # fmt: skip
    spectra, maps = truth(args.size, N_CH_512)
    before = None
    for name in [b for b in args.baselines.split(",") if b] if not args.no_before else []:
        plan_module.RED_BLACK = False
        params = {"angle_tol": 0.0, "momentum": 0.0} if name == "before" else {}
        res = fit_once(s, name[:8], spectra, maps, before=before, **params)
        before = res if before is None else before
    plan_module.RED_BLACK = True
    fit_once(s, "default", spectra, maps, before=before)


def lazy1024(args) -> None:
    import bench_lazy
    import hyperspy.api as hs

    path = Path(args.dir) / f"map_{args.size}_{args.dose:g}.hspy"
    if not path.exists():
        bench_lazy.generate(path, args.size, args.dose, 32)
    spectra, maps = truth(args.size, 1980)
    s = hs.load(path, lazy=True)
    print(f"{path} ({path.stat().st_size / 2**30:.2f} GiB), lazy, chunks {s.data.chunksize}")
    before = None
    if args.two_reads:
        import esmpy_hs.signals._lazy as lazy_module

        lazy_module.ONE_READ = False
        before = fit_once(s, "2 reads", spectra, maps, max_iter=args.max_iter)
        lazy_module.ONE_READ = True
    if args.joint_off:
        plan_module.COARSE_JOINT = False
        before = fit_once(s, "no joint", spectra, maps, max_iter=args.max_iter)
        plan_module.COARSE_JOINT = True
    if args.before:
        plan_module.RED_BLACK = False
        before = fit_once(s, "before", spectra, maps, angle_tol=0.0, momentum=0.0,
                          max_iter=args.max_iter)  # fmt: skip
        plan_module.RED_BLACK = True
    fit_once(s, "default", spectra, maps, before=before, max_iter=args.max_iter)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=("memory512", "lazy1024"))
    ap.add_argument("--size", type=int, default=None, help="rows = cols (512 / 1024)")
    ap.add_argument("--dose", type=float, default=None, help="counts per pixel (1 / 290)")
    ap.add_argument("--max-iter", type=int, default=2000)
    ap.add_argument("--before", action="store_true", help="lazy1024: fit the old way first")
    ap.add_argument("--two-reads", action="store_true",
                    help="lazy1024: a default fit with the summed spectrum read apart first")
    ap.add_argument("--joint-off", action="store_true",
                    help="lazy1024: a default fit without the binned level of the joint fit "
                         "first (esmpy_hs.nmf._plan.COARSE_JOINT = False)")
    ap.add_argument("--no-before", action="store_true", help="memory512: default fit only")
    ap.add_argument("--baselines", default="before,simultaneous",
                    help="memory512: the fits before the default, comma-separated")
    ap.add_argument("--dir", default="/tmp/esmpy_bench")
    ap.add_argument("--refine-blocks", type=int, default=None,
                    help="most blocks of the start's refinement "
                         "(esmpy_hs.nmf._init.MAX_REFINE_BLOCKS; a huge value: the start "
                         "before the grouping)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Importing `")
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.refine_blocks is not None:
        import esmpy_hs.nmf._init as init_module

        init_module.MAX_REFINE_BLOCKS = args.refine_blocks
    if args.case == "memory512":
        args.size = args.size or 512
        args.dose = 1.0 if args.dose is None else args.dose
        memory512(args)
    else:
        args.size = args.size or 1024
        args.dose = 290.0 if args.dose is None else args.dose
        lazy1024(args)


if __name__ == "__main__":
    main()
