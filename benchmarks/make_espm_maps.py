"""Maps made by another simulator (espm 1.1.3) in geometries and numbers of phases the shared
``independent/`` maps do not have.

Not a test, and not run with the project's environment: it needs a Python with ``espm==1.1.3``
(the earlier library, whose simulator is independent of this project's), ``scikit-image`` and
``intervaltree``, e.g. ``/path/to/espm-venv/bin/python benchmarks/make_espm_maps.py OUT``.
Each map is written as ``OUT/NAME/sample.hspy`` (an ``EDS_TEM`` signal with the beam energy,
elevation angle, Mn Kα resolution, elements, ``Sample.thickness`` and ``Sample.density`` a
microscope file would carry) and ``OUT/NAME/truth.npz`` (``true_spectra``: channels × k, the
expected counts of a pure-phase pixel; ``true_maps``: k × y × x; ``compositions``: k × elements,
atomic fractions; ``elements``), the layout of ``shared/data/independent/``, so that
``benchmarks/validate_espm_maps.py`` scores them the same way.

Everything that makes the counts is espm's: its phases (``generate_modular_phases``: its cross
sections, its detector efficiency curve ``SDD_efficiency.txt``, its FWHM = 0.065 keV + 0.01·E,
its continuum and absorption), its abundance maps (``generate_weights``) and its Poisson draw
(``generate_spim``). The maps:

- ``gb_N15_s0``, ``gb_N100_s2``: espm's built-in grain boundary (Ca–P–Sr–Cu, two phases that
  differ only in Sr, a Gaussian ripple 10 pixels wide, 100 × 400, axis from 1.27 keV in 5 eV
  channels) at its 15 counts per pixel and at 100;
- ``particles_s3``: espm's built-in particles (V–Rb–W matrix, N–Yb–Pt and Al–Ti–La spheres of
  radius 20 reaching half a pixel) with other positions;
- ``k2_particles``: the V–Rb–W matrix with pure Al–Ti–La spheres (two phases);
- ``k4_particles``, ``k5_particles``: the built-in three phases with a Fe–Cr–Ni alloy and a
  periclase (MgO) added, spheres reaching 1/3 and 1/4 of a pixel;
- ``k3_laplacian``: the built-in three phases on espm's smooth random maps, where no pixel
  holds more than a third of a minor phase (no phase is ever pure but the matrix).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np

# espm's own phase and map parameters (espm.datasets.built_in_EDXS_datasets), imported below;
# the two phases added for k = 4 and 5 take the continuum parameters of espm's matrix phase.
ALLOY = {"Fe": 0.70, "Cr": 0.20, "Ni": 0.10}
PERICLASE = {"Mg": 0.50, "O": 0.50}


def _symbols(d: dict) -> dict:
    """espm writes elements as atomic numbers in strings ('23'); return symbols."""
    from exspy._misc.elements import elements_db

    table = {int(v["General_properties"]["Z"]): name
             for name, v in elements_db.as_dictionary().items()
             if isinstance(v, dict) and "General_properties" in v}  # fmt: skip
    return {table[int(k)] if str(k).isdigit() else str(k): float(v) for k, v in d.items()}


def _write(out: Path, name: str, phases: np.ndarray, weights: np.ndarray, densities, n: float,
           model_params: dict, elts_dicts: list[dict], seed: int) -> None:  # fmt: skip
    import hyperspy.api as hs
    from espm.datasets.base import generate_spim

    X = generate_spim(phases, weights, np.asarray(densities, float), n, seed=seed)
    dicts = [_symbols(d) for d in elts_dicts]
    elements = sorted({e for d in dicts for e in d})
    comps = np.array([[d.get(e, 0.0) for e in elements] for d in dicts])
    comps /= comps.sum(axis=1, keepdims=True)
    normed = phases / phases.sum(axis=1, keepdims=True)
    true_spectra = (normed * (n * np.asarray(densities, float))[:, None]).T

    s = hs.signals.Signal1D(X.astype(np.int64))
    s.set_signal_type("EDS_TEM")
    ax = s.axes_manager[-1]
    ax.offset, ax.scale, ax.units, ax.name = (model_params["e_offset"], model_params["e_scale"],
                                              "keV", "Energy")  # fmt: skip
    abs_ = model_params["params_dict"]["Abs"]
    fwhm_mn = model_params["width_intercept"] + model_params["width_slope"] * 5.8987
    s.set_microscope_parameters(beam_energy=float(model_params["E0"]),
                                elevation_angle=float(abs_["toa"]),
                                energy_resolution_MnKa=1000.0 * fwhm_mn)  # fmt: skip
    s.metadata.set_item("Sample.elements", elements)
    s.metadata.set_item("Sample.thickness", float(abs_["thickness"]) * 1e7)  # cm → nm
    density = abs_.get("density") or 4.5
    s.metadata.set_item("Sample.density", float(density))
    s.metadata.General.title = f"espm_{name}"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    s.save(str(folder / "sample.hspy"), overwrite=True)
    np.savez(folder / "truth.npz", true_spectra=true_spectra,
             true_maps=np.moveaxis(weights, -1, 0), compositions=comps,
             elements=np.array(elements))  # fmt: skip
    print(f"{name}: {X.shape[0]}×{X.shape[1]}×{X.shape[2]}, k = {len(dicts)}, "
          f"{X.sum() / (X.shape[0] * X.shape[1]):.0f} counts/px, largest share per phase "
          f"{np.round(weights.reshape(-1, weights.shape[-1]).max(axis=0), 3).tolist()}",
          flush=True)  # fmt: skip


def main(argv=None) -> None:
    from espm.datasets.built_in_EDXS_datasets import (
        boundary_misc_dict,
        boundary_phases_dict,
        particles_misc_dict,
        particles_phases_dict,
    )
    from espm.models.generate_EDXS_phases import generate_modular_phases
    from espm.weights.generate_weights import generate_weights

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "espm_maps")

    # the grain boundary, as espm ships it and at a higher dose
    gb = copy.deepcopy(boundary_phases_dict)
    gb_phases = generate_modular_phases(**gb)
    for name, n, seed in (("gb_N15_s0", boundary_misc_dict["N"], 0), ("gb_N100_s2", 100, 2)):
        w = generate_weights("gaussian_ripple", boundary_misc_dict["shape_2d"], n_phases=2,
                             seed=seed, width=10)  # fmt: skip
        _write(out, name, gb_phases, w, boundary_misc_dict["densities"], n, gb["model_params"],
               gb["elts_dicts"], seed)  # fmt: skip

    base = copy.deepcopy(particles_phases_dict)
    mp = base["model_params"]
    dens = particles_misc_dict["densities"]
    three = generate_modular_phases(**base)
    w = generate_weights("sphere", particles_misc_dict["shape_2d"], n_phases=3, seed=3, radius=20)
    _write(out, "particles_s3", three, w, dens, particles_misc_dict["N"], mp, base["elts_dicts"], 3)

    # two phases: the matrix and pure Al–Ti–La spheres
    two = {k: [v[0], v[2]] if isinstance(v, list) else v for k, v in base.items()}
    ph2 = generate_modular_phases(**copy.deepcopy(two))
    w = generate_weights("sphere", (80, 80), n_phases=2, seed=5, radius=12)
    _write(out, "k2_particles", ph2, w, [dens[0], dens[2]], 200, mp, two["elts_dicts"], 5)

    # four and five phases: the built-in three with an alloy and a periclase added
    for k, extra in ((4, [ALLOY]), (5, [ALLOY, PERICLASE])):
        more = copy.deepcopy(base)
        more["elts_dicts"] = more["elts_dicts"] + extra
        more["brstlg_pars"] = more["brstlg_pars"] + [dict(base["brstlg_pars"][0])] * len(extra)
        more["scales"] = more["scales"] + [1] * len(extra)
        phk = generate_modular_phases(**more)
        w = generate_weights("sphere", (96, 96), n_phases=k, seed=7, radius=14)
        _write(out, f"k{k}_particles", phk, w, list(dens) + [1.0] * len(extra), 300, mp,
               more["elts_dicts"], 7)  # fmt: skip

    # every pixel a mixture
    w = generate_weights("laplacian", (80, 80), n_phases=3, seed=11)
    _write(out, "k3_laplacian", three, w, dens, 300, mp, base["elts_dicts"], 11)


if __name__ == "__main__":
    main()
