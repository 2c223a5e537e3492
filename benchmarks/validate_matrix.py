"""Validation matrix of issue 14: the defaults over geometries, chemistries, doses and mismatch.

Not a test: run ``python benchmarks/validate_matrix.py`` (every cell, 64 × 64 maps, one noise
seed; about ten minutes on two cores) or ``--cells NAME ...`` for some of them, ``--list`` for
their names. Each cell simulates a map with the project's simulator (:mod:`esmpy_hs.datasets`),
fits it with ``s.decomposition(algorithm="smart_nmf", output_dimension=k)`` and the defaults
(plus ``--option KEY=VALUE``), and scores it (:func:`esmpy_hs.metrics.score`): the spectral
angle of each true phase with its matched component, the abundance-map MSE, the largest at.%
error of a major element (≥ 5 at.% of the truth), the seconds of the fit.

Cells, by axis of the matrix:

- geometry: particles of maximum abundance 0.33, 0.5 and 1 in a matrix; two layers and a
  wedge; a segregated grain boundary (a thin band, at most 0.3 of a pixel, between two
  grains); a smooth map where every pixel is a mixture (Gaussian ripples, no phase pure);
  minor phases spread through a matrix as smooth random fields of 0 to 1/3 of a pixel (the
  matrix everywhere, as in espm's "laplacian" maps);
- chemistry: the lower-mantle minerals of the reference sample; a V–Rb–W matrix with N–Yb–Pt
  and Al–Ti–La particles (L and M lines, light N); enstatite with forsterite and
  wollastonite (phases sharing every element);
- number of phases: 2, 3 and 4;
- dose: 20 and 300 counts per pixel (and 1000 for one cell);
- mismatch: the map simulated with a detector of 140 eV at Mn Kα read as 130 eV (a width
  mismatch), or with the energy axis recorded 10 eV low.

Prints one row per cell and, with ``--json``, every number. ``--from-truth`` also fits each cell
started from its ground truth (the true spectra fitted on the model's G, the true maps) and
prints the Poisson deviance of both fits over the fitted channels: a default fit whose deviance
is clearly above the one started from the truth is an optimisation failure (the counts prefer
the truth), one at or below it means the counts do not identify the truth at this dose and
geometry (the priors decide).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable

import numpy as np

from esmpy_hs.datasets import (
    REFERENCE_COMPOSITIONS,
    gaussian_ripple_map,
    matrix_abundances,
    phase_spectra,
    simulate,
    sphere_map,
    wedge_map,
)
from esmpy_hs.metrics import score

SHAPE = (64, 64)

CHEMISTRY = {
    "mantle": dict(REFERENCE_COMPOSITIONS),
    "heavy": {
        "V-Rb-W matrix": {"Rb": 0.888, "V": 0.046, "W": 0.066},
        "N-Yb-Pt": {"N": 0.483, "Pt": 0.089, "Yb": 0.428},
        "Al-Ti-La": {"Al": 0.25, "La": 0.519, "Ti": 0.231},
    },
    "shared": {
        "enstatite": {"Mg": 0.2, "Si": 0.2, "O": 0.6},
        "forsterite": {"Mg": 2 / 7, "Si": 1 / 7, "O": 4 / 7},
        "wollastonite": {"Ca": 0.2, "Si": 0.2, "O": 0.6},
    },
    "four": {
        "matrix": {"Mg": 0.2, "Si": 0.2, "O": 0.6},
        "periclase": {"Mg": 0.5, "O": 0.5},
        "perovskite": {"Ca": 0.2, "Ti": 0.2, "O": 0.6},
        "alloy": {"Fe": 0.7, "Ni": 0.3},
    },
}


def _particles(max_abundance: float, n: int) -> np.ndarray:
    centres = [(20, 22), (44, 42), (18, 46)][:n]
    return matrix_abundances(
        np.stack([sphere_map(SHAPE, c, 12, max_abundance) for c in centres])
    )


def _layers() -> np.ndarray:
    top = wedge_map(SHAPE, angle=90.0, low=0.0, high=1.0, start=0.49, stop=0.51)
    return np.stack([1 - top, top])


def _wedge() -> np.ndarray:
    ramp = wedge_map(SHAPE, angle=0.0, low=0.0, high=1.0, start=0.1, stop=0.9)
    return np.stack([1 - ramp, ramp])


def _grain_boundary() -> np.ndarray:
    right = wedge_map(SHAPE, angle=0.0, low=0.0, high=1.0, start=0.49, stop=0.51)
    band = gaussian_ripple_map(SHAPE, width=2.5, wavelength=200, amplitude=0, angle=90.0,
                               max_abundance=0.3)  # fmt: skip
    return np.stack([(1 - right) * (1 - band), right * (1 - band), band])


def _smooth(n: int) -> np.ndarray:
    waves = [
        gaussian_ripple_map(SHAPE, width=14, wavelength=50 + 13 * i, amplitude=8,
                            angle=60.0 * i, offset=-10 + 10 * i)
        for i in range(n)
    ]  # fmt: skip
    m = np.stack(waves) + 0.15
    return m / m.sum(axis=0)


def _spread(n: int) -> np.ndarray:
    """The matrix everywhere and n − 1 phases spread through it, each a smooth random field
    from 0 to 1/3 of a pixel (fixed seed: the same map for every noise seed)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(11)
    minors = []
    for _ in range(n - 1):
        f = gaussian_filter(rng.random(SHAPE), 5.0, mode="wrap")
        minors.append((f - f.min()) / (f.max() - f.min()) / 3)
    return np.concatenate([1 - np.sum(minors, axis=0)[None], np.array(minors)])


GEOMETRY: dict[str, Callable[[int], np.ndarray]] = {
    "particles 0.33": lambda n: _particles(0.33, n - 1),
    "particles 0.5": lambda n: _particles(0.5, n - 1),
    "particles 1": lambda n: _particles(1.0, n - 1),
    "layers": lambda n: _layers(),
    "wedge": lambda n: _wedge(),
    "grain boundary": lambda n: _grain_boundary(),
    "smooth mixture": _smooth,
    "spread phases": _spread,
}

#: name → (chemistry, number of phases, geometry, dose, mismatch)
CELLS = {
    "mantle particles 0.5": ("mantle", 3, "particles 0.5", 300, None),
    "mantle particles 0.5 dose 20": ("mantle", 3, "particles 0.5", 20, None),
    "mantle particles 0.33": ("mantle", 3, "particles 0.33", 300, None),
    "mantle particles 1": ("mantle", 3, "particles 1", 300, None),
    "mantle particles 0.5 dose 1000": ("mantle", 3, "particles 0.5", 1000, None),
    "mantle smooth mixture": ("mantle", 3, "smooth mixture", 300, None),
    "mantle spread phases": ("mantle", 3, "spread phases", 300, None),
    "heavy spread phases": ("heavy", 3, "spread phases", 300, None),
    "mantle 2 phases layers": ("mantle", 2, "layers", 300, None),
    "mantle 2 phases wedge": ("mantle", 2, "wedge", 300, None),
    "mantle grain boundary": ("mantle", 3, "grain boundary", 300, None),
    "heavy particles 0.5": ("heavy", 3, "particles 0.5", 300, None),
    "heavy particles 0.5 dose 20": ("heavy", 3, "particles 0.5", 20, None),
    "shared particles 0.5": ("shared", 3, "particles 0.5", 300, None),
    "shared particles 1": ("shared", 3, "particles 1", 300, None),
    "four phases particles 0.5": ("four", 4, "particles 0.5", 300, None),
    "mantle particles 0.5, width mismatch": ("mantle", 3, "particles 0.5", 300, "width"),
    "mantle particles 0.5, offset −10 eV": ("mantle", 3, "particles 0.5", 300, "offset"),
}


def make_cell(name: str, seed: int = 0):
    chem, k, geometry, dose, mismatch = CELLS[name]
    comps = dict(list(CHEMISTRY[chem].items())[:k])
    maps = GEOMETRY[geometry](k)[:k]
    maps = maps / maps.sum(axis=0)
    resolution = 140.0 if mismatch == "width" else 130.0
    spectra = phase_spectra(comps, energy_resolution_MnKa=resolution, thickness=None)
    s = simulate(spectra, maps, dose=dose, random_state=seed, compositions=comps,
                 phase_names=list(comps))  # fmt: skip
    if mismatch == "width":  # the file says 130 eV
        s.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
                            130.0)  # fmt: skip
    if mismatch == "offset":  # the axis recorded 10 eV low
        s.axes_manager.signal_axes[0].offset -= 0.010
    return s


def deviance(s) -> float:
    """Poisson deviance of the data under the fitted model of ``s``, over its fitted channels."""
    from esmpy_hs.nmf._split import poisson_deviance

    c0, c1 = s.metadata.SmartNMF.channels
    Y = s.data.reshape(-1, s.data.shape[-1])[:, c0:c1]
    per_count = poisson_deviance(Y, s.learning_results.factors[c0:c1].T,
                                 s.learning_results.loadings.T)  # fmt: skip
    return per_count * float(Y.sum())


def truth_start(s) -> tuple[np.ndarray, np.ndarray]:
    """(W, H) of the ground truth of ``s`` after a smart_nmf fit: the true spectra fitted on the
    fit's G by non-negative least squares, and the true maps."""
    from scipy.optimize import nnls

    from esmpy_hs.signals._decomposition import fit_arrays

    G = fit_arrays(s)["model"].G
    G = G if G.ndim == 2 else G.mean(axis=0)
    c0, c1 = s.metadata.SmartNMF.channels
    truth = s.metadata.ESMPY_truth
    spectra = np.asarray(truth.spectra)[:, c0:c1]
    W = np.stack([nnls(G, x, maxiter=50 * G.shape[1])[0] for x in spectra], axis=1)
    maps = np.asarray(truth.maps)
    return W, maps.reshape(maps.shape[0], -1)


def run_cell(name: str, options: dict, seed: int = 0, from_truth: bool = False) -> dict:
    s = make_cell(name, seed)
    k = CELLS[name][1]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False, **options)
    seconds = time.perf_counter() - t0
    extra = {}
    if from_truth:
        extra["deviance"] = deviance(s)
        st = make_cell(name, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False,
                             **{**options, "init": truth_start(s)})  # fmt: skip
        extra["deviance_from_truth"] = deviance(st)
        if CELLS[name][4] == "offset":
            st.axes_manager.signal_axes[0].offset += 0.010
        extra["angles_from_truth"] = [float(a) for a in score(st, quantify=False).angles]
    if CELLS[name][4] == "offset":  # score on the simulated axis (the factors are per channel)
        s.axes_manager.signal_axes[0].offset += 0.010
    sc = score(s)
    comps = dict(list(CHEMISTRY[CELLS[name][0]].items())[:k])
    errors = []
    for phase, errs in (sc.composition_errors or {}).items():
        total = sum(comps[phase].values())
        errors += [abs(v) for el, v in errs.items() if comps[phase].get(el, 0.0) / total >= 0.05]
    return {
        "cell": name,
        "angles": [float(a) for a in sc.angles],
        "mean_angle": float(np.mean(sc.angles)),
        "worst_angle": float(np.max(sc.angles)),
        "map_mse": float(np.mean(sc.mse)),
        "worst_major_at": float(np.nanmax(errors)) if errors else float("nan"),
        "seconds": seconds,
        **extra,
    }


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--list", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--from-truth", action="store_true",
                   help="also fit from the ground truth and compare the deviances")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(CELLS))
        return
    options = dict(kv.split("=", 1) for kv in args.option)
    options = {key: _value(v) for key, v in options.items()}
    print(f"options: {options or 'defaults'}; seed {args.seed}")
    print(f"{'cell':<40}{'angles (°)':>24}{'mean':>7}{'worst':>7}{'map MSE':>10}"
          f"{'major at.%':>11}{'s':>6}")  # fmt: skip
    rows = []
    for name in args.cells:
        r = run_cell(name, options, args.seed, args.from_truth)
        rows.append(r)
        angles = ", ".join(f"{a:.1f}" for a in r["angles"])
        print(f"{name:<40}{angles:>24}{r['mean_angle']:7.1f}{r['worst_angle']:7.1f}"
              f"{r['map_mse']:10.5f}{r['worst_major_at']:11.1f}{r['seconds']:6.0f}", flush=True)
        if args.from_truth:
            at = ", ".join(f"{a:.1f}" for a in r["angles_from_truth"])
            print(f"{'  from the truth':<40}{at:>24}   deviance {r['deviance']:.0f} (default), "
                  f"{r['deviance_from_truth']:.0f} (from the truth)", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"options": options, "seed": args.seed, "cells": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
