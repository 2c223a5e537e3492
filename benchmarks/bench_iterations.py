"""Iterations and quality of the schedule (issue 18): before (the relative-objective rule alone,
no extrapolation: ``angle_tol=0, momentum=0``), the movement rule alone (``momentum=0``) and the
defaults (movement rule and extrapolation).

Not a test: ``python benchmarks/bench_iterations.py`` fits every map three times with the
signal-level defaults otherwise (``decomposition(algorithm="smart_nmf", output_dimension=3)``)
and prints, per map and fit,

* the iterations of the main loop and of the refit of H after the move to the composition bound
  (``n_iter_`` + ``final_iter_``) and the passes redone after an extrapolation raised the
  objective (``n_restarts_``, main loop);
* the distance of the answer to the one before: the largest spectral angle between the same
  component of the two fits (degrees, over the fitted channels) and the largest per-phase map
  MSE between them (abundance fractions);
* every fit against the ground truth: the angle of each true phase with its matched component
  and the mean map MSE;
* the last movements the old fit recorded (``move_history_``: largest change of a spectrum's
  angle, root-mean-square and largest change of the abundances over 10 iterations).

Maps: the reference sample (:func:`esmpy_hs.datasets.reference_sample`, 128 × 128, doses 293 and
18, noise seeds 0 and 1) and the other simulator's ``paper_N293_s1`` and ``particles_N500_w1``
(``../shared/data/independent/``, fitted with that simulator's width law,
``Detector(fwhm_model="linear")``). ``--maps`` picks some; ``--json`` writes every number;
``--angle-tol`` / ``--abundance-tol`` / ``--momentum`` try other settings for the new fits.
``--maps real71 real71_abs`` fits the real 71 GPa map (no truth) as recorded and with absorption
(100 nm, 4.5 g/cm³).
Iteration counts are deterministic; wall times on a shared machine are not (the three fits of a
map run one after the other in one process).
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
#: the real 71 GPa map, as recorded (no thickness: no absorption) and with the earlier
#: implementation's absorption assumption (100 nm, 4.5 g/cm³; G refreshed every 10 iterations)
REAL = {"real71": {}, "real71_abs": {"Sample.thickness": 100.0, "Sample.density": 4.5}}


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

    if name in REAL:
        s = hs.load(SHARED / "data" / "71GPa_experimental_data.hspy")
        s.set_signal_type("EDS_ESMPY")
        for key, value in REAL[name].items():
            s.metadata.set_item(key, value)
        return s, None, None, {}

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
    ap.add_argument("--maps", nargs="*", default=list(MAPS), choices=MAPS + tuple(REAL))
    ap.add_argument("--angle-tol", type=float, default=None, help="degrees (default: SmartNMF's)")
    ap.add_argument("--abundance-tol", type=float, default=None)
    ap.add_argument("--momentum", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    new = {}
    for key in ("angle_tol", "abundance_tol", "momentum"):
        if getattr(args, key) is not None:
            new[key] = getattr(args, key)
    fits = {
        "before": {"angle_tol": 0.0, "momentum": 0.0},
        "rule": {"momentum": 0.0, **{k: v for k, v in new.items() if k != "momentum"}},
        "default": new,
    }
    rows = []
    for name in args.maps:
        s, spectra, maps, kw = load(name)
        row = {"map": name}
        ref = None
        for label, params in fits.items():
            est, seconds = fit(s, kw, **params)
            c = channels(s)
            ref = est if ref is None else ref
            angle, mse = between(est, ref)
            angles, truth_mse = ([np.nan], np.nan) if spectra is None else \
                against_truth(est, spectra, maps, *c)  # fmt: skip
            row[label] = {
                "params": params, "n_iter": est.n_iter_, "final_iter": est.final_iter_,
                "restarts": est.n_restarts_,
                "stop_reason": est.stop_reason_, "angle_vs_before": angle,
                "mse_vs_before": mse, "truth_angles": angles, "truth_mse": truth_mse,
                "seconds": seconds, "last_moves": est.move_history_[-3:],
            }  # fmt: skip
            print(
                f"{name:18s} {label:8s} iterations {est.n_iter_:5d}+{est.final_iter_:<4d} "
                f"({est.n_restarts_} redone) "
                f"vs before: {angle:.3f}°, MSE {mse:.1e} | truth "
                f"{', '.join(f'{a:.2f}' for a in angles)}° MSE {truth_mse:.5f} | {seconds:.0f} s",
                flush=True,
            )
        rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
