"""Element maps (issue #19): per-pixel Mg at.% against the truth and HyperSpy's line windows.

Not a test: run ``python benchmarks/bench_element_maps.py`` (the reference sample, 128 × 128
pixels at 18 counts per pixel, one noise seed; a few minutes on two cores) or with
``--seeds 0 1 2``, ``--dose``, ``--shape``; ``--timing`` also times element maps of a
1024 × 1024 map.

For each seed:

1. ``s = reference_sample(dose, shape, random_state=seed)`` and
   ``s.decomposition(algorithm="smart_nmf", output_dimension=3)`` (the defaults);
2. ``s.get_element_maps("at.%")``;
3. HyperSpy's route on the same counts: ``s.add_lines()`` (exspy picks one line per element:
   Kα, or Lα for Hf, Lu, Nd, Sm), ``s.get_lines_intensity(integration_windows=iw,
   background_windows=bw)`` with ``iw = s.estimate_integration_windows()`` and
   ``bw = s.estimate_background_windows()`` (exspy's defaults: 2 FWHM windows, background on
   both sides), then ``s.quantification(intensities, "CL", factors=k, composition_units="atomic")``;
   the same without background subtraction is also run and the better of the two is compared;
   ``navigation_mask=None``: exspy's default (``1.0``) marks as vacuum, and sets to 0, every
   pixel whose largest channel holds ≤ 1 count — most pixels at a few tens of counts;
4. the RMSE (at.%) of each route's Mg map against the truth
   (:func:`esmpy_hs.datasets.reference_composition_maps`) over all pixels (pixels where exspy
   returns NaN or ±inf are counted and left out of its RMSE).

The Cliff–Lorimer k-factors come from the project's physics, the physics that made the data:
``k_e = A_e / I_e`` with ``A_e`` the atomic weight and ``I_e`` the counts per atom that fall in
exspy's integration window of the element's line, ``Σ_window G[:, e]`` of the model built on this
signal (:func:`esmpy_hs.signals._decomposition.build_model`) with the absorption of the map's mean
true composition (``G_for_phases``). exspy's CL gives weight fractions ``∝ k_e I_e``, hence the
atomic weight. These are the best single k-factors for this sample (they use its true mean
composition); the noiseless map quantified with them shows the route's bias without noise
("noiseless" column).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from esmpy_hs.datasets import (
    reference_composition_maps,
    reference_maps,
    reference_sample,
)


def kfactors(s, lines: list[str], windows, mean_composition: dict[str, float]) -> list[float]:
    """Cliff–Lorimer k-factors from the project's physics (see the module docstring)."""
    from esmpy_hs.physics._elements import atomic_weight
    from esmpy_hs.signals._decomposition import build_model

    model, _, _ = build_model(s)
    G = model.G_for_phases([mean_composition])[0]
    e = model.energies
    out = []
    for line, (lo, hi) in zip(lines, windows, strict=True):
        el = line.split("_")[0]
        cols = [
            j
            for j, (ce, kind) in enumerate(zip(model.column_elements, model.kinds, strict=True))
            if ce == el and kind == "element"
        ]
        inside = (e >= lo) & (e <= hi)
        per_atom = float(G[np.ix_(inside, cols)].sum())
        out.append(atomic_weight(el) / per_atom)
    return out


def line_window_maps(s, factors, background: bool) -> dict[str, np.ndarray]:
    """exspy's line-window Cliff–Lorimer quantification: {element: at.% map}."""
    iw = s.estimate_integration_windows()
    kw = {"integration_windows": iw}
    if background:
        kw["background_windows"] = s.estimate_background_windows()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        intensities = s.get_lines_intensity(**kw)
        res = s.quantification(
            intensities, method="CL", factors=factors, composition_units="atomic",
            navigation_mask=None, show_progressbar=False,
        )  # fmt: skip
    return {m.metadata.Sample.elements[0]: np.asarray(m.data, dtype=float) for m in res}


def _rmse(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(a)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2))), int((~ok).sum())


def run_seed(dose: float, shape: tuple[int, int], seed: int, element: str) -> dict:
    elements, truth = reference_composition_maps(shape)
    t_el = 100 * truth[elements.index(element)]
    mean_comp = dict(zip(elements, truth.reshape(len(elements), -1).mean(axis=1), strict=True))

    s = reference_sample(dose=dose, shape=shape, random_state=seed)
    t0 = time.perf_counter()
    s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = {m.metadata.General.title: m for m in s.get_element_maps("at.%")}
    t_maps = time.perf_counter() - t0
    ours = np.asarray(maps[element].data)
    sig = np.sqrt(np.asarray(maps[element].metadata.Signal.Noise_properties.variance.data))

    s.add_lines()
    lines = list(s.metadata.Sample.xray_lines)
    factors = kfactors(s, lines, s.estimate_integration_windows(), mean_comp)
    clean = reference_sample(dose=dose, shape=shape, noise=False)
    clean.add_lines()
    row: dict = {
        "seed": seed,
        "fit_s": t_fit,
        "maps_s": t_maps,
        "smart_nmf_rmse": _rmse(ours, t_el)[0],
        "smart_nmf_mean_sigma": float(sig.mean()),
        "smart_nmf_coverage_1sigma": float(np.mean(np.abs(ours - t_el) <= sig)),
        "lines": lines,
        "kfactors": factors,
    }
    for bg in (True, False):
        key = "bg" if bg else "nobg"
        hs_map = line_window_maps(s, factors, bg)[element]
        row[f"hyperspy_{key}_rmse"], row[f"hyperspy_{key}_nonfinite"] = _rmse(hs_map, t_el)
        clean_map = line_window_maps(clean, factors, bg)[element]
        row[f"hyperspy_{key}_noiseless_rmse"] = _rmse(clean_map, t_el)[0]
    best = min(("bg", "nobg"), key=lambda k: row[f"hyperspy_{k}_rmse"])
    row["hyperspy_best"] = best
    row["ratio"] = row[f"hyperspy_{best}_rmse"] / row["smart_nmf_rmse"]
    return row


def time_large(n: int = 1024, source_shape: tuple[int, int] = (64, 64)) -> dict:
    """Element maps of an n × n map from a finished fit (a synthetic fitted record).

    The record (W, model) is the fit of the reference sample on ``source_shape`` at 293 counts
    per pixel; H is the reference sample's true abundance maps at n × n. It sits on an n × n
    signal whose spectra are two placeholder channels (element maps read only the fit, the
    navigation axes and the loadings), eager, and on an n × n × 1980 lazy signal whose data
    are never computed (its maps computed together with ``dask.compute``; computing each
    map on its own repeats the shared work once per map).
    """
    import dask.array as da
    import hyperspy.api as hs

    src = reference_sample(dose=293, shape=source_shape, random_state=0)
    src.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False)
    H = reference_maps((n, n)).reshape(3, -1).T.copy()
    out = {"pixels": n * n}
    for lazy in (False, True):
        if lazy:
            data = da.zeros((n, n, src.data.shape[-1]), dtype=np.uint16, chunks=(128, n, -1))
            s = hs.signals.Signal1D(data).as_lazy()
        else:
            s = hs.signals.Signal1D(np.zeros((n, n, 2), dtype=np.float32))
        s.metadata.set_item("Signal.signal_type", "EDS_ESMPY")
        s.set_signal_type("EDS_ESMPY")
        s.metadata.set_item("SmartNMF", src.metadata.SmartNMF.as_dictionary())
        s.learning_results.loadings = H
        s.learning_results.decomposition_algorithm = "smart_nmf"
        t0 = time.perf_counter()
        maps = s.get_element_maps("at.%")
        if lazy:  # one dask graph: compute every map and variance together
            import dask

            arrays = [m.data for m in maps]
            arrays += [m.metadata.Signal.Noise_properties.variance.data for m in maps]
            computed = dask.compute(*arrays)
            assert all(isinstance(a, np.ndarray) for a in computed)
        out["lazy_s" if lazy else "eager_s"] = time.perf_counter() - t0
        out["elements"] = len(maps)
    return out


def real_map(path: str, png: str | None, elements=("Mg", "Si", "Ca", "Fe")) -> dict:
    """The real 71 GPa map: element maps next to HyperSpy's line-window maps.

    The map is fitted as in the tutorial (``Sample.thickness`` 100 nm, ``Sample.density``
    4.5 g/cm³, three phases, defaults). HyperSpy's route is the one of :func:`line_window_maps`
    without background subtraction (the better route on the synthetic map) with k-factors from
    the project's physics (:func:`kfactors`) at the absorption of the map's fitted mean
    composition (``s.quantify_region`` of all pixels; there is no truth here). Reported: the
    value ± σ at the pixel where the Mg-richest phase's abundance is largest, and the
    pixel-to-pixel standard deviation of each element inside each phase's core (abundance
    ≥ 0.9, when it has at least 50 such pixels), where the composition is expected to be
    uniform.
    """
    import hyperspy.api as hs

    s = hs.load(path)
    s.set_signal_type("EDS_ESMPY")
    s.metadata.set_item("Sample.thickness", 100.0)
    s.metadata.set_item("Sample.density", 4.5)
    t0 = time.perf_counter()
    s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False)
    t_fit = time.perf_counter() - t0
    maps = {m.metadata.General.title: m for m in s.get_element_maps("at.%")}
    whole = s.quantify_region(np.ones(s.axes_manager._navigation_shape_in_array, dtype=bool))
    mean_comp = {e: float(v) for e, v in zip(whole.elements, whole.atomic_fractions[:, 0],
                                               strict=True) if v > 0}  # fmt: skip
    s.add_lines()
    lines = list(s.metadata.Sample.xray_lines)
    factors = kfactors(s, lines, s.estimate_integration_windows(), mean_comp)
    hs_maps = line_window_maps(s, factors, background=False)
    H = np.asarray(s.learning_results.loadings)
    shape = s.axes_manager._navigation_shape_in_array
    q = s.quantify_phases()
    out: dict = {"fit_s": t_fit, "counts_per_pixel": float(s.data.sum(axis=-1).mean()),
                 "lines": lines, "phases": {}}  # fmt: skip
    for k in range(H.shape[1]):
        core = (H[:, k] >= 0.9).reshape(shape)
        name = max(q.atomic_percent[q.phase_names[k]].items(), key=lambda kv: kv[1]
                   if kv[0] != "O" else -1)[0]  # fmt: skip
        row = {"pixels": int(core.sum()), "main_cation": name}
        out["phases"][q.phase_names[k]] = row
        if core.sum() < 50:  # never (nearly) pure: no uniform region to measure the scatter
            continue
        for el in elements:
            a, b = np.asarray(maps[el].data)[core], hs_maps[el][core]
            row[el] = {
                "smart_nmf_mean": float(a.mean()),
                "smart_nmf_std": float(a.std()),
                "hyperspy_mean": float(np.nanmean(b)),
                "hyperspy_std": float(np.nanstd(b)),
            }
    mg_phase = int(np.argmax(q.atomic_fractions[q.elements.index("Mg")]))
    p = np.unravel_index(int(np.argmax(H[:, mg_phase])), shape)
    out["pixel"] = {"row": int(p[0]), "col": int(p[1])}
    for el in elements:
        sig = np.sqrt(np.asarray(maps[el].metadata.Signal.Noise_properties.variance.data))
        out["pixel"][el] = {"smart_nmf": float(maps[el].data[p]), "sigma": float(sig[p]),
                            "hyperspy": float(hs_maps[el][p])}  # fmt: skip
    if png:
        import matplotlib.pyplot as plt

        ref = []
        for el in elements:
            r = maps[el].deepcopy()
            r.data = hs_maps[el]
            ref.append(r)
        fig = s.plot_element_maps(elements=list(elements), reference=ref,
                                  reference_label="HyperSpy line windows", filename=png,
                                  title="71 GPa map: smart_nmf element maps (top) and "
                                        "HyperSpy line windows (bottom), at.%")  # fmt: skip
        plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dose", type=float, default=18.0)
    p.add_argument("--shape", type=int, nargs=2, default=[128, 128])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--element", default="Mg")
    p.add_argument("--timing", action="store_true", help="also time a 1024 × 1024 map")
    p.add_argument("--json", help="write every number to this file")
    p.add_argument("--real", metavar="MAP.hspy",
                   help="instead: the real 71 GPa map (see real_map), e.g. "
                   "../shared/data/71GPa_experimental_data.hspy")  # fmt: skip
    p.add_argument("--png", help="with --real: write the figure there")
    args = p.parse_args(argv)
    if args.real:
        r = real_map(args.real, args.png)
        print(json.dumps(r, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(r, f, indent=1)
        return 0
    rows = []
    for seed in args.seeds:
        r = run_seed(args.dose, tuple(args.shape), seed, args.element)
        rows.append(r)
        print(
            f"seed {seed}: {args.element} at.% RMSE smart_nmf {r['smart_nmf_rmse']:.3f} "
            f"(mean σ {r['smart_nmf_mean_sigma']:.2f}, 1σ coverage "
            f"{100 * r['smart_nmf_coverage_1sigma']:.1f} %); HyperSpy line windows with "
            f"background {r['hyperspy_bg_rmse']:.2f} ({r['hyperspy_bg_nonfinite']} pixels "
            f"NaN/inf; noiseless {r['hyperspy_bg_noiseless_rmse']:.2f}), without "
            f"{r['hyperspy_nobg_rmse']:.2f} ({r['hyperspy_nobg_nonfinite']} NaN/inf; noiseless "
            f"{r['hyperspy_nobg_noiseless_rmse']:.2f}); ratio (best HyperSpy / smart_nmf) "
            f"{r['ratio']:.1f}; fit {r['fit_s']:.0f} s, maps {r['maps_s']:.2f} s"
        )
    print("lines:", rows[0]["lines"])
    print("k-factors:", [round(k, 4) for k in rows[0]["kfactors"]])
    result = {"dose": args.dose, "shape": args.shape, "element": args.element, "seeds": rows}
    if args.timing:
        t = time_large()
        result["timing_1024"] = t
        print(
            f"element maps of a 1024 × 1024 map ({t['elements']} elements, at.% and σ): "
            f"eager {t['eager_s']:.2f} s, lazy (computed) {t['lazy_s']:.2f} s"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
