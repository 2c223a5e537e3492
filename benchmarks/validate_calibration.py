"""Detector self-calibration (issue 12): ``calibrate="auto"`` (the default) against False.

Not a test: ``python benchmarks/validate_calibration.py`` fits every map in
``shared/data/independent/`` (made by another simulator; README there) twice with
``s.decomposition(algorithm="smart_nmf", output_dimension=k)`` — the defaults, and the same with
``calibrate=False`` — and the real 71 GPa map twice (``--real``; 100 nm, 4.5 g/cm³ as in
``validate_real_map.py``'s absorption setting). Nothing else is changed between the two fits.

Scores (:func:`esmpy_hs.metrics.score`, the truth of ``truth.npz`` attached as
``metadata.ESMPY_truth``): spectral angle of each true phase with its matched component over the
fitted channels, abundance-map MSE, and the absolute at.% error of each major element (≥ 5 at.%
in the truth renormalised over the modelled elements, as in ``validate_paper.py``).

``best°``: the mean angle of each true spectrum with its non-negative least-squares fit on the
columns of the fit's G (the truth's own absorption): the best any W can do with that G.

Real map: the calibration found, the Poisson deviance of the fit
D = 2 Σ [y log(y/μ) − (y − μ)] over pixels and fitted channels (μ = loadings · factors), and
whether the three minerals are identified (:mod:`validate_real_map`'s windows). Times: the
calibration (summing the map included) and the whole decomposition, wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED = HERE.parent.parent / "shared" / "data"
MAPS = ("paper_N293_s1", "paper_N18_s1", "paper_N293_narrow_s2", "particles_N500_w1")


def load_independent(folder: Path):
    import hyperspy.api as hs

    s = hs.load(str(folder / "sample.hspy"))
    s.set_signal_type("EDS_ESMPY")
    t = np.load(folder / "truth.npz", allow_pickle=True)
    elements = [str(e) for e in t["elements"]]
    comps = np.asarray(t["compositions"], dtype=float)
    k = comps.shape[0]
    names = [f"phase {i}" for i in range(k)]
    s.metadata.set_item(
        "ESMPY_truth",
        {
            "phase_names": names,
            "spectra": np.asarray(t["true_spectra"], dtype=float).T,
            "maps": np.asarray(t["true_maps"], dtype=float),
            "compositions": {
                n: {el: float(v) for el, v in zip(elements, row, strict=True) if v > 0}
                for n, row in zip(names, comps, strict=True)
            },
        },
    )
    return s, k


def fit_independent(s, k: int, calibrate, **options) -> dict:
    from validate_paper import major_elements

    from esmpy_hs.metrics import score

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False,
                              return_info=True, calibrate=calibrate, **options)  # fmt: skip
    seconds = time.perf_counter() - t0
    sc = score(s)
    q = s.quantify_phases()
    truth = s.metadata.ESMPY_truth.as_dictionary()
    majors = major_elements(truth["compositions"], q.elements)
    errs = {n: {el: float(sc.composition_errors[n][el]) for el in majors[n]}
            for n in sc.phase_names}  # fmt: skip
    cal = json.loads(s.metadata.SmartNMF.calibration)
    return {
        "best_angles": best_angles(s),
        "angles": [float(a) for a in sc.angles],
        "mean_angle": float(sc.mean_angle),
        "mean_mse": float(sc.mean_mse),
        "major_errors": errs,
        "max_major_error": max((v for d in errs.values() for v in d.values()), default=0.0),
        "n_iter": int(est.n_iter_),
        "seconds": seconds,
        "calibration": cal,
    }


def best_angles(s) -> list[float]:
    """Angle (°) of each true spectrum with its non-negative least-squares fit on the columns of
    the stored model's G (absorption of the truth's own composition): the best any W can do."""
    from scipy.optimize import nnls

    from esmpy_hs.metrics import spectral_angle
    from esmpy_hs.physics import PhysicsModel

    model = PhysicsModel.from_dict(json.loads(s.metadata.SmartNMF.model))
    c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
    truth = s.metadata.ESMPY_truth.as_dictionary()
    spectra = np.asarray(truth["spectra"], dtype=float)[:, c0:c1]
    comps = [{el: v for el, v in c.items() if el in model.elements}
             for c in truth["compositions"].values()]  # fmt: skip
    G3 = model.G_for_phases(comps) if model.specimen.absorbs else [model.G] * len(comps)
    out = []
    for t, G in zip(spectra, G3, strict=True):
        w, _ = nnls(G, t)
        out.append(float(spectral_angle(t, G @ w)))
    return out


def poisson_deviance(s) -> float:
    """D of the stored smart_nmf fit over pixels and fitted channels, in chunks of pixels."""
    c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
    F = np.asarray(s.learning_results.factors, dtype=float)[c0:c1]  # channels × k
    L = np.asarray(s.learning_results.loadings, dtype=float)  # pixels × k
    X = s.data.reshape(-1, s.data.shape[-1])
    total = 0.0
    for i in range(0, X.shape[0], 4096):
        y = X[i : i + 4096, c0:c1].astype(float)
        mu = np.maximum(L[i : i + 4096] @ F.T, 1e-12)
        pos = y > 0
        total += 2.0 * (float(np.sum(y[pos] * np.log(y[pos] / mu[pos]))) - float(np.sum(y - mu)))
    return total


def fit_real(path: Path, calibrate, **options) -> dict:
    import hyperspy.api as hs
    from validate_real_map import WINDOWS, identify, mineral_ratios

    s = hs.load(str(path))
    s.set_signal_type("EDS_ESMPY")
    s.metadata.set_item("Sample.thickness", 100.0)
    s.metadata.set_item("Sample.density", 4.5)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                              return_info=True, calibrate=calibrate, **options)  # fmt: skip
    seconds = time.perf_counter() - t0
    q = s.quantify_phases()
    at, err = q.atomic_percent, q.atomic_percent_error
    minerals = identify(at)
    reads = {}
    for n in at:
        rs = mineral_ratios(minerals[n], at[n], err[n])
        reads[n] = {
            "mineral": minerals[n],
            "ratios": {key: round(v, 3) for key, (v, _) in rs.items()},
            "ok": all(
                WINDOWS[minerals[n]][key][0] <= v <= WINDOWS[minerals[n]][key][1]
                for key, (v, _) in rs.items()
            ),
        }
    return {
        "seconds": seconds,
        "n_iter": int(est.n_iter_),
        "deviance": poisson_deviance(s),
        "calibration": json.loads(s.metadata.SmartNMF.calibration),
        "phases": reads,
        "three_minerals": len(set(minerals.values())) == 3 and all(r["ok"] for r in reads.values()),
    }


def calibration_time(s) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.calibrate_detector(plot=False)
    return time.perf_counter() - t0


def _cal_text(cal) -> str:
    if cal is None:
        return "—"
    if not cal["applied"]:
        return f"kept ({cal['message']})"
    f = cal["fwhm_eV"]
    return (f"{cal['offset_shift_eV']:+.1f} eV, gain {cal['gain']:.5f}, FWHM C/O/Mn "
            f"{f['C Ka']:.1f}/{f['O Ka']:.1f}/{f['Mn Ka']:.1f} eV")  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--maps", nargs="*", default=list(MAPS))
    p.add_argument("--real", action="store_true", help="also the real 71 GPa map")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    out: dict = {"independent": {}, "real": {}}
    print(
        f"{'map':<22}{'calibrate':>10}  {'mean°':>6}  {'angles°':>20}  {'best°':>5}  "
        f"{'map MSE':>8}  {'max|Δat.%|':>10}  {'iters':>5}  {'fit s':>6}  calibration"
    )
    for name in args.maps:
        folder = SHARED / "independent" / name
        for calibrate in ("auto", False):
            s, k = load_independent(folder)
            r = fit_independent(s, k, calibrate)
            if calibrate == "auto":
                r["calibration_seconds"] = calibration_time(s)
            out["independent"].setdefault(name, {})[str(calibrate)] = r
            ang = " ".join(f"{a:6.2f}" for a in r["angles"])
            print(f"{name:<22}{calibrate!s:>10}  {r['mean_angle']:6.2f}  {ang:>20}  "
                  f"{np.mean(r['best_angles']):5.2f}  {r['mean_mse']:8.5f}  "
                  f"{r['max_major_error']:10.2f}  {r['n_iter']:>5}  "
                  f"{r['seconds']:6.1f}  {_cal_text(r['calibration'])}"
                  + (f" [{r['calibration_seconds']:.1f} s]" if "calibration_seconds" in r
                     else ""), flush=True)  # fmt: skip
            for phase, errs in r["major_errors"].items():
                print(f"{'':<34}{phase}: " + ", ".join(f"{el} {v:.2f}" for el, v in errs.items()))
    if args.real:
        path = SHARED / "71GPa_experimental_data.hspy"
        for calibrate in ("auto", False):
            r = fit_real(path, calibrate)
            out["real"][str(calibrate)] = r
            print(
                f"\nreal map, calibrate={calibrate}: {r['n_iter']} iterations, "
                f"{r['seconds']:.0f} s, Poisson deviance {r['deviance']:.6g}; "
                f"calibration {_cal_text(r['calibration'])}"
            )
            for n, v in r["phases"].items():
                print(
                    f"  {n} → {v['mineral']}: {v['ratios']} "
                    f"{'reads as' if v['ok'] else 'does NOT read as'} {v['mineral']}"
                )
            print(f"  three minerals identified: {'yes' if r['three_minerals'] else 'no'}",
                  flush=True)  # fmt: skip
        if len(out["real"]) == 2:
            d = out["real"]["auto"]["deviance"] - out["real"]["False"]["deviance"]
            print(f"change in Poisson deviance (auto − False): {d:+.6g}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
