"""The coarse-to-fine start at low dose against the warm-up start (issue 18), in one process.

Not a test: ``python benchmarks/bench_coarse.py [--maps ...]`` fits every map twice with the
signal-level defaults (``smart_nmf(s, 3)``): first with the start before
(``esmpy_hs.nmf._plan.COARSE_TO_FINE = False``: the H-only warm-up), then with the default
(the coarse-to-fine start wherever ``_plan.coarse_levels`` chooses it). Printed per fit: λ, the
coarse levels' (bin factor, iterations), the full-resolution iterations, the fit's seconds
(set-up + iterations, ``setup_time_`` + ``iteration_times_``), the seconds of the whole
``smart_nmf`` call, the angle of each true phase with its matched component, the mean map MSE
against the truth, and the second fit's distance to the first (largest angle, largest
per-phase map MSE) with the ratio of the fit times.

Maps: ``mem512`` / ``mem256`` (the reference sample on a 512² / 256² grid × 4096 channels at
1 count per pixel, drawn as in ``bench_scale.py memory512``, held as uint16),
``paper_N18_s1_thin3`` / ``paper_N18_s1_thin1`` (the other simulator's map thinned to 3 and 1
counts per pixel: binomial, p = 1/6 and 1/18, seed 0), or any name of
:mod:`bench_iterations`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def load_map(name: str, folder: Path):
    import bench_iterations as bi
    import bench_scale as bs

    if name.startswith("mem"):
        size = int(name[3:])
        path = folder / f"counts_{size}_{bs.N_CH_512}_1.npz"
        if not path.exists():
            code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_scale as b; "
                    f"b.draw_sparse(__import__('pathlib').Path({str(path)!r}), {size}, 1.0)")
            subprocess.run([sys.executable, "-c", code], check=True)
        spectra, maps = bs.truth(size, bs.N_CH_512)
        return bs.signal_512(path), spectra, maps, {}
    if "_thin" in name:
        base, dose = name.split("_thin")
        s, spectra, maps, kw = bi.load(base)
        full = s.data.sum(axis=-1).mean()
        rng = np.random.default_rng(0)
        s.data = rng.binomial(s.data.astype(np.int64), float(dose) / full).astype(np.uint16)
        return s, spectra, maps, kw
    return bi.load(name)


def main(argv=None) -> None:
    import bench_iterations as bi

    import esmpy_hs.nmf._plan as plan_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", nargs="*",
                    default=["mem256", "paper_N18_s1_thin3", "paper_N18_s1_thin1"])
    ap.add_argument("--dir", default="/tmp/esmpy_bench")
    args = ap.parse_args(argv)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", message="Importing `")
    for name in args.maps:
        s, spectra, maps, kw = load_map(name, Path(args.dir))
        print(f"{name}: {s.data.sum(axis=-1).mean():.2f} counts/px, "
              f"{s.axes_manager.navigation_shape} × {s.axes_manager.signal_shape[0]}", flush=True)
        ref = None
        for label, on in (("warm-up", False), ("coarse", True)):
            plan_module.COARSE_TO_FINE = on
            est, wall = bi.fit(s, kw)
            fit_s = est.setup_time_ + float(np.sum(est.iteration_times_))
            angles, mse = bi.against_truth(est, spectra, maps, *bi.channels(s))
            line = (f"  {label:8s} λ {est.lambda_L_:5.3g} coarse {est.coarse_iter_} iterations "
                    f"{est.n_iter_}+{est.final_iter_} fit {fit_s:6.1f} s (set-up "
                    f"{est.setup_time_:.1f} s) smart_nmf {wall:6.1f} s | truth "
                    f"{', '.join(f'{a:.2f}' for a in angles)}° MSE {mse:.5f}")  # fmt: skip
            if ref is not None:
                a, m = bi.between(est, ref[0])
                line += f" | vs warm-up {a:.3f}°, MSE {m:.1e}, fit time ratio {fit_s / ref[1]:.2f}"
            print(line, flush=True)
            ref = (est, fit_s) if ref is None else ref
        del s
    plan_module.COARSE_TO_FINE = True


if __name__ == "__main__":
    main()
