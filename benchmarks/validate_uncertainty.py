"""Coverage of the stated uncertainties of ``quantify_phases`` (issue 16): how often the truth
lies within the stated 1σ and 2σ, per error mode, and how large the stated σ is.

Not a test. Run from the repository root, e.g.::

    python benchmarks/validate_uncertainty.py --which sim          # 64 × 64 mismatch cells
    python benchmarks/validate_uncertainty.py --which reference    # 128 × 128, 293 and 18 /px
    python benchmarks/validate_uncertainty.py --which budget       # the budget's sources drawn
    python benchmarks/validate_uncertainty.py --which independent  # ../shared/data/independent
    python benchmarks/validate_uncertainty.py --json out.json ...

Each map is fitted with the defaults (``s.decomposition(algorithm="smart_nmf",
output_dimension=k)``, plus the string keywords of ``--option KEY=VALUE``), then
``s.quantify_phases(uncertainty="total", n_splits=2)`` (seed 0), which keeps the counting,
split and systematic parts; the four modes are scored from those parts (``counting``,
``splits`` = counting ⊕ splits, ``systematic`` = counting ⊕ systematic, ``total``). Fitted
phases are matched to the true ones by composition (Hungarian, L1 distance); the *major*
elements are those with a true fraction ≥ 5 at.% (truth renormalised over the
fitted elements); an element of a phase the fit marks undetermined counts as missed.

Model-misfit candidates (:mod:`esmpy_hs.signals._misfit`, measured here, not part of
``"total"``; docs/validation.rst says why), scored next to the four modes:

- ``+misfit``: total ⊕ the excess sandwich σ of the residuals in FWHM blocks;
- ``birge``: systematic ⊕ √max(1, φ_k) × (counting ⊕ splits), φ_k the phase's dispersion
  (Birge ratio of its attributed spectrum over FWHM blocks: quasi-Poisson scaling);
- ``uniform``: the control, total × one factor per map that gives the map's major elements the
  same median σ as ``birge``; a candidate that covers no more than ``uniform`` says nothing about
  *which* elements are off.

Maps:

- ``sim``: the project's simulator (:mod:`esmpy_hs.datasets`, the chemistries and particle
  geometry of ``benchmarks/validate_matrix.py``, 64 × 64, 300 counts/px, seed 0) with a
  deliberate mismatch: the detector of 140 eV at Mn Kα read as 130 eV ("width"); the axis
  recorded 10 eV low ("offset"); every element's emission multiplied by 1 ± 0.10 (signs drawn
  with seed 0 per element; "cross sections ±10 %": the map is simulated from the composition
  c_e (1 + δ_e), renormalised, and scored against c); for the mantle and the V–Rb–W chemistry.
- ``budget``: the same simulator (64 × 64, 300 counts/px, particles 0.5, the mantle and the
  V–Rb–W chemistry), each element's sensitivity moved by one random draw of the default
  budget's own sources (:func:`budget_draw`; draws 0–4, ``--draws FIRST STOP`` for others):
  a world that differs from the model exactly as the budget says it may. About 68 % within
  1σ here means the propagation (first order, renormalisation, the split and counting parts)
  turns the budget into the right σ; the other groups test the budget's size.
- ``reference``: the reference sample (128 × 128, 293 and 18 counts/px, noise seed 1).
- ``independent``: the four maps of ``../shared/data/independent/`` (another simulator).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
MAJOR = 0.05
MODES = ("counting", "splits", "systematic", "total", "+misfit", "birge", "uniform")


def _load(path: Path):
    import hyperspy.api as hs

    s = hs.load(str(path))
    s.set_signal_type("EDS_ESMPY")
    return s


def _sim(chem: str, mismatch: str, seed: int = 0):
    """(signal, truth per phase) of one mismatch cell of the project's simulator."""
    from benchmarks.validate_matrix import CHEMISTRY, GEOMETRY
    from esmpy_hs.datasets import phase_spectra, simulate

    comps = dict(CHEMISTRY[chem])
    k = len(comps)
    maps = GEOMETRY["particles 0.5"](k)[:k]
    maps = maps / maps.sum(axis=0)
    emitted = comps
    if mismatch == "cross sections":
        rng = np.random.default_rng(seed)
        els = sorted({e for c in comps.values() for e in c})
        delta = dict(zip(els, 0.10 * rng.choice([-1.0, 1.0], size=len(els)), strict=True))
        emitted = {p: {e: v * (1 + delta[e]) for e, v in c.items()} for p, c in comps.items()}
    if mismatch == "budget":
        delta = budget_draw(comps, seed)
        emitted = {p: {e: v * (1 + delta[e]) for e, v in c.items()} for p, c in comps.items()}
    resolution = 140.0 if mismatch == "width" else 130.0
    spectra = phase_spectra(emitted, energy_resolution_MnKa=resolution, thickness=None)
    s = simulate(spectra, maps, dose=300, random_state=seed, compositions=comps,
                 phase_names=list(comps))  # fmt: skip
    if mismatch == "width":
        s.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
                            130.0)  # fmt: skip
    if mismatch == "offset":
        s.axes_manager.signal_axes[0].offset -= 0.010
    return s, [dict(c) for c in comps.values()]


def budget_draw(comps: dict, seed: int) -> dict[str, float]:
    """Each element's relative sensitivity error δ_e for one draw of the default budget's
    sources (:func:`esmpy_hs.physics.systematics.sensitivity_perturbations` on the model of the
    simulated axis, no specimen thickness): δ_e = Σ_s z_s δ_s,e, with z_s standard normal,
    except the unstated window's type, uniform with unit variance (the budget's own model of
    it). A whole element's emission is scaled (the simulator takes compositions), i.e. its
    families move together by their count-weighted mean: the first-order change of its
    counts that the propagation uses."""
    from esmpy_hs.physics import build_G
    from esmpy_hs.physics.systematics import sensitivity_perturbations

    els = sorted({e for c in comps.values() for e in c})
    model = build_G((0.3, 0.01, 1980), 200.0, els)
    W = np.zeros((model.n_columns, 1))
    for el, j in model.element_rows.items():
        W[j, 0] = sum(c.get(el, 0.0) for c in comps.values())
    rng = np.random.default_rng(1000 + seed)
    delta = np.zeros(len(model.element_rows))
    for sources in sensitivity_perturbations(model, W).values():
        for label, d in sources:
            z = rng.uniform(-np.sqrt(3), np.sqrt(3)) if "not stated" in label \
                else rng.standard_normal()  # fmt: skip
            delta += z * d[:, 0]
    return dict(zip(model.element_rows, delta, strict=True))


def _truth_of(name: str, s):
    """The true compositions: the same reading as ``bench_n_phases``' (one place)."""
    from bench_n_phases import _truth

    return _truth(name, s)


def score(q, truth: list[dict], misfit=None) -> dict:
    """Coverage counts of each mode, the errors and the stated σ of the major elements.

    ``misfit``: (atomic σ, dispersion per phase) of :func:`esmpy_hs.signals._misfit.misfit_errors`
    for the misfit candidates (left out when None)."""
    from bench_n_phases import match_by_composition

    els, T, F, rows, cols = match_by_composition(q, truth)
    parts = q.error_parts
    sig = {
        "counting": parts["counting"][0],
        "splits": np.hypot(parts["counting"][0], parts["splits"][0]),
        "systematic": np.hypot(parts["counting"][0], parts["systematic"][0]),
        "total": q.atomic_errors,
    }
    modes = MODES if misfit is not None else MODES[:4]
    major = [(e, j) for i, j in zip(rows, cols, strict=True) for e in range(len(els))
             if T[e, i] >= MAJOR]  # fmt: skip
    if misfit is not None:
        mis, phi = misfit
        sig["+misfit"] = np.hypot(q.atomic_errors, mis)
        scale = np.sqrt(np.maximum(1.0, np.nan_to_num(np.asarray(phi), nan=1.0)))[None, :]
        sig["birge"] = np.hypot(sig["splits"] * scale, parts["systematic"][0])
        med = [np.nanmedian([s[e, j] for e, j in major]) for s in (sig["birge"], sig["total"])]
        sig["uniform"] = sig["total"] * (med[0] / med[1] if med[1] > 0 else 1.0)
    errs, sigmas, within1, within2, labels = [], {m: [] for m in modes}, {}, {}, []
    for m in modes:
        within1[m] = within2[m] = 0
    for i, j in zip(rows, cols, strict=True):
        for e in range(len(els)):
            if T[e, i] < MAJOR:
                continue
            err = abs(F[e, j] - T[e, i])  # NaN (undetermined): never within
            errs.append(float(err))
            labels.append(f"{els[e]}@{i}")
            for m in modes:
                s = float(sig[m][e, j])
                sigmas[m].append(s)
                within1[m] += bool(err <= s)
                within2[m] += bool(err <= 2 * s)
    pairs = major
    out = {
        "n": len(errs),
        "within1": within1,
        "within2": within2,
        "median_error_at": 100 * float(np.nanmedian(errs)) if errs else float("nan"),
        "mean_error_at": 100 * float(np.nanmean(errs)) if errs else float("nan"),
        "median_sigma_at": {m: 100 * float(np.nanmedian(v)) for m, v in sigmas.items()},
        "errors_at": [100 * e for e in errs],
        "sigma_total_at": [100 * s for s in sigmas["total"]],
        "labels": labels,
        "systematic_parts_median_at": {
            p: 100 * float(np.nanmedian([parts[p][0][e, j] for e, j in pairs]))
            for p in ("atomic data", "detector efficiency", "absorption", "calibration")
        },
    }
    if misfit is not None:
        out["dispersion"] = [float(x) for x in misfit[1]]
        out["misfit_at"] = [100 * float(misfit[0][e, j]) for e, j in pairs]
        out["sigma_birge_at"] = [100 * float(sig["birge"][e, j]) for e, j in pairs]
    return out


def todo(which: list[str], draws: range = range(5)):
    from esmpy_hs.datasets import reference_sample

    out = []
    if "sim" in which:
        for chem in ("mantle", "heavy"):
            for mm in ("width", "offset", "cross sections"):
                out.append((f"sim {chem}, {mm}", lambda c=chem, m=mm: _sim(c, m), 3))
    if "budget" in which:  # the budget's own sources drawn: a test of the propagation
        for chem in ("mantle", "heavy"):
            for seed in draws:
                out.append((f"budget {chem}, draw {seed}",
                            lambda c=chem, sd=seed: _sim(c, "budget", sd), 3))  # fmt: skip
    if "reference" in which:
        for dose in (293.0, 18.0):
            out.append((f"reference {dose:.0f}", lambda d=dose: reference_sample(
                d, random_state=1), 3))  # fmt: skip
    if "independent" in which:
        for folder in sorted((DATA / "independent").iterdir()):
            out.append((f"independent/{folder.name}",
                        lambda f=folder: _load(f / "sample.hspy"), 3))  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", nargs="+", default=["sim", "reference", "independent"])
    p.add_argument("--only", nargs="*", default=None, help="names (substrings) to run")
    p.add_argument("--n-splits", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--draws", type=int, nargs=2, default=(0, 5), metavar=("FIRST", "STOP"),
                   help="the budget draws (seeds): range(FIRST, STOP)")  # fmt: skip
    p.add_argument("--no-misfit", action="store_true", help="skip the misfit candidates")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a decomposition keyword for every fit (e.g. smoothing=model)")
    args = p.parse_args()
    options = dict(kv.split("=", 1) for kv in args.option)
    results = {}
    tot = {m: [0, 0, 0] for m in MODES}
    for name, make, k in todo(args.which, range(*args.draws)):
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.perf_counter()
        made = make()
        s, truth = made if isinstance(made, tuple) else (made, None)
        truth = _truth_of(name, s) if truth is None else truth
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False,
                            **options)  # fmt: skip
            q = s.quantify_phases(uncertainty="total", n_splits=args.n_splits)
            misfit = None
            if not args.no_misfit:
                from esmpy_hs.signals._misfit import misfit_errors

                mis, _, phi = misfit_errors(s)
                misfit = (mis, phi)
        r = score(q, truth, misfit)
        r["seconds"] = time.perf_counter() - t0
        results[name] = r
        n = r["n"]
        line = ", ".join(f"{m} {r['within1'][m]}/{n} ({r['within2'][m]})" for m in r["within1"])
        print(f"{name}: within 1σ (2σ): {line}; median |error| {r['median_error_at']:.2f} at.%, "
              f"median σ " + ", ".join(f"{m} {v:.2f}" for m, v in r["median_sigma_at"].items())
              + "; systematic parts (median at.%) "
              + ", ".join(f"{p} {v:.2f}" for p, v in r["systematic_parts_median_at"].items())
              + f"; {r['seconds']:.0f} s", flush=True)  # fmt: skip
        if "dispersion" in r:
            print("   dispersion per phase " + ", ".join(f"{x:.1f}" for x in r["dispersion"])
                  + "; per major element |error| / σ total / σ misfit / σ birge (at.%): "
                  + ", ".join(f"{lab} {e:.2f}/{t:.2f}/{m:.2f}/{b:.2f}" for lab, e, t, m, b in zip(
                      r["labels"], r["errors_at"], r["sigma_total_at"], r["misfit_at"],
                      r["sigma_birge_at"], strict=True)), flush=True)  # fmt: skip
        for m in r["within1"]:
            tot[m][0] += r["within1"][m]
            tot[m][1] += r["within2"][m]
            tot[m][2] += n
    for m in MODES:
        a, b, n = tot[m]
        if n:
            print(f"all, {m}: within 1σ {a}/{n} = {a / n:.0%}, within 2σ {b}/{n} = {b / n:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
