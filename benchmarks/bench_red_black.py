"""The red-black sweep of the H step against the simultaneous update (issue 18), in one process.

Not a test: ``python benchmarks/bench_red_black.py [--maps ...]`` fits every map twice with
the signal-level defaults (``smart_nmf(s, 3)``): first with every pixel moving at once
(``esmpy_hs.nmf._plan.RED_BLACK = False``, the update before), then with the red-black sweep
whatever λ (``RED_BLACK_LAMBDA = 0``; the default sweeps only where λ ≥
``RED_BLACK_LAMBDA``, so it is one of the two). Printed per fit: λ, the iterations (main
loop + refit of H at the composition bound), the seconds, the angle of each true phase with
its matched component and the mean map MSE against the truth, and the red-black fit's
distance to the one before (largest angle, largest per-phase map MSE). Maps as in
:mod:`bench_iterations` (default: the reference sample at 293 and 18 counts per pixel, seed
0, and the other simulator's ``paper_N293_s1``) or ``refD_sN`` (the reference sample at D
counts per pixel, seed N).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> None:
    from bench_iterations import MAPS, REAL, against_truth, between, channels, fit, load

    import esmpy_hs.nmf._plan as plan_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", nargs="*", default=["ref293_s0", "ref18_s0", "paper_N293_s1"],
                    help=f"{MAPS + tuple(REAL)}, or refD_sN (reference sample at D "
                         "counts/px, seed N)")  # fmt: skip
    args = ap.parse_args(argv)
    default_lambda = plan_module.RED_BLACK_LAMBDA
    warnings.filterwarnings("ignore", message="Importing `")
    for name in args.maps:
        if name not in MAPS + tuple(REAL) and not name.startswith("ref"):
            ap.error(f"unknown map {name}")
        s, spectra, maps, kw = load(name)
        ref = None
        for label, rb in (("before", False), ("red-black", True)):
            plan_module.RED_BLACK = rb
            plan_module.RED_BLACK_LAMBDA = 0.0  # red-black whatever λ
            est, seconds = fit(s, kw)
            angles, mse = ([np.nan], np.nan) if spectra is None else \
                against_truth(est, spectra, maps, *channels(s))  # fmt: skip
            line = (f"{name:14s} {label:9s} λ {est.lambda_L_:6.3g} "
                    f"iterations {est.n_iter_:5d}+{est.final_iter_:<4d} "
                    f"{seconds:6.1f} s | truth {', '.join(f'{a:.2f}' for a in angles)}° "
                    f"MSE {mse:.5f}")  # fmt: skip
            if ref is not None:
                a, m = between(est, ref[0])
                line += f" | vs before {a:.3f}°, MSE {m:.1e}, time ratio {seconds / ref[1]:.2f}"
            print(line, flush=True)
            ref = (est, seconds) if ref is None else ref
    plan_module.RED_BLACK = True
    plan_module.RED_BLACK_LAMBDA = default_lambda


if __name__ == "__main__":
    main()
