"""Iterations and quality of the stopping rules (issue 18): the relative-objective rule alone
(``angle_tol=0``, the rule before) against the defaults (the movement rule beside it).

Not a test: ``python benchmarks/bench_iterations.py`` fits every map twice with the signal-level
defaults (``decomposition(algorithm="smart_nmf", output_dimension=3)``) and prints, per map,

* the iterations of the main loop and of the refit of H after the move to the composition bound
  (``n_iter_`` + ``final_iter_``), before and after;
* the distance of the new answer to the old one: the largest spectral angle between the same
  component of the two fits (degrees, over the fitted channels) and the largest per-phase map
  MSE between them (abundance fractions);
* both fits against the ground truth: the angle of each true phase with its matched component
  and the mean map MSE;
* the last movements the old fit recorded (``move_history_``: largest change of a spectrum's
  angle, root-mean-square and largest change of the abundances over 10 iterations).

Maps: the reference sample (:func:`esmpy_hs.datasets.reference_sample`, 128 × 128, doses 293 and
18, noise seeds 0 and 1) and the other simulator's ``paper_N293_s1`` and ``particles_N500_w1``
(``../shared/data/independent/``, fitted with that simulator's width law,
``Detector(fwhm_model="linear")``). ``--maps`` picks some; ``--json`` writes every number;
``--angle-tol`` / ``--abundance-tol`` try other tolerances for the new rule. Iteration counts are
deterministic; wall times on a shared machine are not, and are printed for information only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
INDEPENDENT = Path(os.environ.get("ESMPY_INDEPENDENT", SHARED / "data" / "independent"))
MAPS = ("ref293_s0", "ref293_s1", "ref18_s0", "ref18_s1", "paper_N293_s1", "particles_N500_w1")


def load(name: str):
    """The signal, the truth (spectra k × channels, maps k × pixels) and the fit's extra kwargs."""
    if name.startswith("ref"):
        from esmpy_hs.datasets import get_truth, reference_sample

        dose, seed = name[3:].split("_s")
        s = reference_sample(float(dose), random_state=int(seed))
        truth = get_truth(s)
        spectra = np.asarray(truth["spectra"], dtype=float)
        maps = np.asarray(truth["maps"], dtype=float)
        return s, spectra, maps.reshape(maps.shape[0], -1), {}
    import hyperspy.api as hs

    from esmpy_hs.physics import Detector

    folder = INDEPENDENT / name
    s = hs.load(folder / "sample.hspy")
    s.set_signal_type("EDS_ESMPY")
    t = np.load(folder / "truth.npz")
    maps = t["true_maps"]
    kw = {"detector": Detector(fwhm_model="linear")}
    return s, t["true_spectra"].T, maps.reshape(maps.shape[0], -1), kw


def fit(s, kw: dict, **params):
    from esmpy_hs.signals._decomposition import smart_nmf

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = smart_nmf(s, 3, print_info=False, progress=False, **kw, **params)
    est = out["estimator"]
    return est, time.perf_counter() - t0


def against_truth(est, spectra, maps, c0: int, c1: int):
    from esmpy_hs.metrics import map_mse, match_phases, spectral_angle

    comp = est.components_
    true = spectra[:, c0:c1]
    m = match_phases(true, comp, maps, est.H_)
    perm = list(m.permutation)
    angles = [float(spectral_angle(true[i], comp[j])) for i, j in enumerate(perm)]
    mse = float(map_mse(maps, est.H_[perm], renormalise=True))
    return angles, mse


def between(a, b) -> tuple[float, float]:
    """Largest angle (degrees) between the same components and largest per-phase map MSE."""
    from esmpy_hs.metrics import spectral_angle

    angle = max(float(spectral_angle(a.components_[j], b.components_[j]))
                for j in range(a.components_.shape[0]))  # fmt: skip
    fa = a.H_ / a.H_.sum(axis=0)
    fb = b.H_ / b.H_.sum(axis=0)
    return angle, float(((fa - fb) ** 2).mean(axis=1).max())


def channels(s) -> tuple[int, int]:
    from esmpy_hs.signals._record import read_record

    return tuple(read_record(s).channels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", nargs="*", default=list(MAPS), choices=MAPS)
    ap.add_argument("--angle-tol", type=float, default=None, help="degrees (default: SmartNMF's)")
    ap.add_argument("--abundance-tol", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    new = {}
    if args.angle_tol is not None:
        new["angle_tol"] = args.angle_tol
    if args.abundance_tol is not None:
        new["abundance_tol"] = args.abundance_tol
    rows = []
    for name in args.maps:
        s, spectra, maps, kw = load(name)
        old, t_old = fit(s, kw, angle_tol=0.0)
        c = channels(s)
        est, t_new = fit(s, kw, **new)
        angle, mse = between(est, old)
        row = {
            "map": name,
            "iter_old": [old.n_iter_, old.final_iter_],
            "iter_new": [est.n_iter_, est.final_iter_],
            "stop_old": old.stop_reason_,
            "stop_new": est.stop_reason_,
            "angle_new_vs_old": angle,
            "mse_new_vs_old": mse,
            "truth_old": against_truth(old, spectra, maps, *c),
            "truth_new": against_truth(est, spectra, maps, *c),
            "seconds": [t_old, t_new],
            "moves_old_tail": old.move_history_[-4:],
        }
        rows.append(row)
        to, tn = row["truth_old"], row["truth_new"]
        print(
            f"{name:18s} iterations {old.n_iter_:5d}+{old.final_iter_:<4d} → "
            f"{est.n_iter_:5d}+{est.final_iter_:<4d} new vs old: {angle:.3f}°, MSE {mse:.1e} | "
            f"truth old {', '.join(f'{a:.2f}' for a in to[0])}° MSE {to[1]:.5f}; new "
            f"{', '.join(f'{a:.2f}' for a in tn[0])}° MSE {tn[1]:.5f} | "
            f"{t_old:.0f} s → {t_new:.0f} s",
            flush=True,
        )
        print("    old fit's last moves (iteration, °, abundance rms, max): "
              + "; ".join(f"{i} {a:.4f} {d:.1e} {x:.1e}" for i, a, d, x in old.move_history_[-4:]),
              flush=True)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
