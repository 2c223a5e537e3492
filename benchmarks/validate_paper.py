"""Validation study of issue 8: the earlier paper's benchmark, reproduced on esmpy-hs.

Not a test: run ``python benchmarks/validate_paper.py`` (the full study, 128 × 128 pixels, five
noise seeds at 293 and 18 counts per pixel; tens of minutes on two cores) or
``python benchmarks/validate_paper.py --quick`` (64 × 64, two seeds; a couple of minutes).

The sample is :func:`esmpy_hs.datasets.reference_sample` (``shared/notes/validation.md``). Each
noise seed is fitted by the methods named with ``--methods``:

``default``
    ``s.decomposition(algorithm="smart_nmf", output_dimension=3)``: esmpy-hs's defaults
    (λ = 0.1, μ = 0.01, ε_reg = 0.01, H simplex, ``init="auto"``, max_iter 2000, tol 1e-8).
``model``
    The defaults with ``smoothing="model"`` (the smoothing prior on the model's counts).
``paper``
    smart_nmf with the paper's regularisation: λ = 1, μ = 0.004, ε_reg = 0.01, W simplex
    (``simplex="W"``); everything else at the defaults.
``sklearn``
    scikit-learn's KL NMF, ``NMF(n_components=3, solver="mu", beta_loss="kullback-leibler",
    init="nndsvda", max_iter=200, random_state=seed)``, on the same counts as a pixels × channels
    CSR matrix over the channels smart_nmf fits (``metadata.SmartNMF.channels``).
``sklearn-long``
    The same with ``max_iter=--sklearn-long-iter`` (default 1000).

Scores (:mod:`esmpy_hs.metrics`): the spectral angle of each true phase with its matched
component (Hungarian matching on the total angle, over the fitted channels), the abundance-map
MSE (fitted maps renormalised to sum to 1 in every pixel; a no-op under the H simplex) and, for
smart_nmf, the absolute at.% errors of the major elements (≥ 5 at.% in the truth renormalised
over the modelled elements) from ``s.quantify_phases()``.

scikit-learn's components carry an arbitrary scale, so its maps need a convention before they can
be renormalised: each component is rescaled to the total counts of the true phase it is matched
to (its map then reads in abundance units, the units of the truth; this uses the truth's scale,
which favours scikit-learn). The MSE of the plain count fractions (components scaled to unit
sum) is printed beside it.

Prints one row per fit, a summary per dose and method (mean ± standard deviation over the seeds)
and writes ``validate_paper.png`` (maps and spectra next to the truth for the first seed at each
dose) and, with ``--json``, every number.
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

from esmpy_hs.datasets import get_truth, reference_sample
from esmpy_hs.metrics import map_mse, match_phases, score, spectral_angle

PAPER = {"lambda_L": 1.0, "mu": 0.004, "epsilon_reg": 0.01, "simplex": "W"}
METHODS = ("default", "model", "paper", "sklearn", "sklearn-long")
LABELS = {
    "default": "smart_nmf defaults",
    "model": "smart_nmf defaults, smoothing='model'",
    "paper": "smart_nmf, paper (λ=1, μ=0.004, W simplex)",
    "sklearn": "scikit-learn KL NMF",
    "sklearn-long": "scikit-learn KL NMF (long)",
}
#: Elements at or above this at.% in the (renormalised) truth are "major".
MAJOR_AT_PERCENT = 5.0


# ---------------------------------------------------------------------------
# fits
# ---------------------------------------------------------------------------


def major_elements(compositions: dict, elements: list[str]) -> dict[str, list[str]]:
    """``{phase: [elements ≥ 5 at.%]}`` of the truth renormalised over ``elements``."""
    out = {}
    for phase, comp in compositions.items():
        total = sum(float(comp.get(el, 0.0)) for el in elements)
        out[phase] = [el for el in elements if 100 * float(comp.get(el, 0.0)) / total >= 5.0]
    return out


def fit_channels_of(s) -> tuple[int, int]:
    """The channels smart_nmf fits on this signal (from a fit if there is one)."""
    ch = s.metadata.get_item("SmartNMF.channels", None)
    if ch is not None:
        return int(ch[0]), int(ch[1])
    from esmpy_hs.signals._decomposition import build_model

    _, channels, _ = build_model(s)
    return channels


def run_smart(s, options: dict) -> dict:
    """Fit ``s`` with smart_nmf and score it."""
    t0 = time.perf_counter()
    est = s.decomposition(
        algorithm="smart_nmf", output_dimension=3, print_info=False, return_info=True, **options
    )
    seconds = time.perf_counter() - t0
    sc = score(s)
    truth = get_truth(s)
    c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
    q = s.quantify_phases()
    est_at = q.atomic_percent
    est_names = list(est_at)
    perm = list(sc.permutation)
    majors = major_elements(truth["compositions"], q.elements)
    major_err = {
        name: {el: float(sc.composition_errors[name][el]) for el in majors[name]}
        for name in sc.phase_names
    }
    comps = {name: est_at[est_names[perm[i]]] for i, name in enumerate(sc.phase_names)}
    lr = s.learning_results
    true_shape = np.asarray(truth["maps"]).shape[1:]
    maps = _renorm(np.asarray(lr.loadings, dtype=float).T)[perm].reshape(-1, *true_shape)
    return {
        "angles": [float(a) for a in sc.angles],
        "mean_angle": float(sc.mean_angle),
        "mse": [float(m) for m in sc.mse],
        "mean_mse": float(sc.mean_mse),
        "disagree": bool(sc.disagree),
        "major_errors": major_err,
        "max_major_error": max(v for d in major_err.values() for v in d.values()),
        "mean_abs_error": float(sc.mean_composition_error),
        "compositions": comps,
        "n_iter": int(est.n_iter_),
        "stop_reason": str(est.stop_reason_),
        "seconds": seconds,
        "_spectra": np.asarray(lr.factors, dtype=float).T[perm, c0:c1],
        "_maps": maps,
        "_channels": (c0, c1),
    }


def _renorm(maps: np.ndarray) -> np.ndarray:
    total = maps.sum(axis=0, keepdims=True)
    return np.divide(maps, total, out=np.zeros_like(maps), where=total > 0)


def run_sklearn(s, max_iter: int, seed: int, tol: float) -> dict:
    """scikit-learn's KL NMF on the fitted channels of ``s``, scored against the truth."""
    import scipy.sparse as sp
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    c0, c1 = fit_channels_of(s)
    truth = get_truth(s)
    true_spectra = np.asarray(truth["spectra"], dtype=float)[:, c0:c1]
    true_maps = np.asarray(truth["maps"], dtype=float)
    k = true_maps.shape[0]
    t0 = time.perf_counter()
    X = sp.csr_matrix(s.data.reshape(-1, s.data.shape[-1])[:, c0:c1].astype(np.float64))
    model = NMF(
        n_components=k, solver="mu", beta_loss="kullback-leibler", init="nndsvda",
        max_iter=max_iter, random_state=seed, tol=tol,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loadings = model.fit_transform(X)  # pixels × k
    seconds = time.perf_counter() - t0
    comps = model.components_  # k × channels
    maps_raw = loadings.T.reshape(k, *true_maps.shape[1:])
    # match on the (scale-free) angles first
    m = match_phases(true_spectra, comps, true_maps, maps_raw * comps.sum(axis=1)[:, None, None])
    perm = list(m.permutation)
    spectra = comps[perm]
    angles = np.asarray(spectral_angle(true_spectra, spectra), dtype=float)
    # maps in abundance units: each component scaled to its matched true phase's total counts
    counts = maps_raw[perm] * spectra.sum(axis=1)[:, None, None]  # counts per phase per pixel
    abundance = counts / true_spectra.sum(axis=1)[:, None, None]
    mse = np.asarray(map_mse(true_maps, abundance, renormalise=True, per_phase=True))
    mse_counts = float(map_mse(true_maps, counts, renormalise=True))
    return {
        "angles": [float(a) for a in angles],
        "mean_angle": float(angles.mean()),
        "mse": [float(x) for x in mse],
        "mean_mse": float(mse.mean()),
        "mean_mse_count_fractions": mse_counts,
        "disagree": bool(m.disagree),
        "n_iter": int(model.n_iter_),
        "seconds": seconds,
        "_spectra": spectra,
        "_maps": _renorm(abundance),
        "_channels": (c0, c1),
    }


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def _fmt_row(method: str, dose: float, seed: int, r: dict) -> str:
    ang = " ".join(f"{a:6.2f}" for a in r["angles"])
    err = f"{r['max_major_error']:6.2f}" if "max_major_error" in r else f"{'—':>6}"
    extra = "  (MSE disagrees)" if r["disagree"] else ""
    if "mean_mse_count_fractions" in r:
        extra += f"  [count-fraction MSE {r['mean_mse_count_fractions']:.4f}]"
    return (
        f"{method:<13}{dose:>6g}{seed:>5}  {ang}  {r['mean_angle']:6.2f}  "
        f"{r['mean_mse']:.5f}  {err}  {r['n_iter']:>5}  {r['seconds']:7.1f}{extra}"
    )


def print_header(phases: list[str]) -> None:
    short = " ".join(f"{p[:6]:>6}" for p in phases)
    print(
        f"{'method':<13}{'dose':>6}{'seed':>5}  {short}  {'mean°':>6}  {'map MSE':>7}  "
        f"{'max|Δ|':>6}  {'iters':>5}  {'seconds':>7}"
    )


def summarise(results: list[dict], phases: list[str]) -> str:
    """Mean ± std over seeds per (dose, method), and the major-element errors."""
    lines = []
    keys = sorted({(r["dose"], r["method"]) for r in results}, key=lambda t: (-t[0], t[1]))
    lines.append(
        f"{'dose':>5}  {'method':<13}{'n':>3}  "
        + "  ".join(f"{p[:13]:>13}" for p in phases)
        + f"  {'mean angle °':>13}  {'map MSE':>17}  {'iters':>9}  {'seconds':>11}"
    )
    for dose, method in keys:
        rs = [r for r in results if r["dose"] == dose and r["method"] == method]
        ang = np.array([r["angles"] for r in rs])
        mean_ang = np.array([r["mean_angle"] for r in rs])
        mse = np.array([r["mean_mse"] for r in rs])
        it = np.array([r["n_iter"] for r in rs])
        sec = np.array([r["seconds"] for r in rs])
        per = "  ".join(
            f"{ang[:, j].mean():6.2f} ± {ang[:, j].std():4.2f}" for j in range(ang.shape[1])
        )
        lines.append(
            f"{dose:>5g}  {method:<13}{len(rs):>3}  {per}  "
            f"{mean_ang.mean():6.2f} ± {mean_ang.std():4.2f}  "
            f"{mse.mean():.5f} ± {mse.std():.5f}  {it.mean():5.0f}–{it.max():<3d}  "
            f"{sec.mean():5.1f} ± {sec.std():3.1f}"
        )
    lines.append("")
    lines.append("Major elements (≥ 5 at.% in the truth): mean |at.% error| over seeds (max)")
    for dose, method in keys:
        rs = [r for r in results if r["dose"] == dose and r["method"] == method]
        if "major_errors" not in rs[0]:
            continue
        parts = []
        for phase in phases:
            els = list(rs[0]["major_errors"][phase])
            vals = " ".join(
                f"{el} {np.mean([r['major_errors'][phase][el] for r in rs]):.2f}"
                f" ({max(r['major_errors'][phase][el] for r in rs):.2f})"
                for el in els
            )
            parts.append(f"{phase}: {vals}")
        lines.append(f"  {dose:g} {method}: " + "; ".join(parts))
    lines.append("")
    lines.append("Fitted compositions (at.%, mean over seeds) of the major elements")
    for dose, method in keys:
        rs = [r for r in results if r["dose"] == dose and r["method"] == method]
        if "compositions" not in rs[0]:
            continue
        parts = []
        for phase in phases:
            els = list(rs[0]["major_errors"][phase])
            vals = " ".join(
                f"{el} {np.mean([r['compositions'][phase][el] for r in rs]):.2f}" for el in els
            )
            parts.append(f"{phase}: {vals}")
        lines.append(f"  {dose:g} {method}: " + "; ".join(parts))
    return "\n".join(lines)


def make_figure(figs: dict, path: Path, phases: list[str]) -> None:
    """Maps and spectra beside the truth, first seed of each dose."""
    import matplotlib.pyplot as plt

    doses = sorted(figs, reverse=True)
    k = len(phases)
    methods = [m for m in METHODS if any(m in figs[d]["fits"] for d in doses)]
    ncols = 2 + len(methods)
    fig, axes = plt.subplots(
        k * len(doses), ncols, figsize=(2.3 * ncols + 3.5, 2.3 * k * len(doses)), squeeze=False,
        gridspec_kw={"width_ratios": [1] * (ncols - 1) + [2.6]},
    )  # fmt: skip
    colours = {"default": "C0", "paper": "C1", "sklearn": "C2", "sklearn-long": "C3",
               "model": "C4"}  # fmt: skip
    for di, dose in enumerate(doses):
        f = figs[dose]
        e = f["energies"]
        for j, phase in enumerate(phases):
            row = axes[di * k + j]
            vmax = float(f["true_maps"][j].max())
            row[0].imshow(f["true_maps"][j], vmin=0, vmax=vmax, cmap="viridis")
            row[0].set_title(f"truth: {phase}\n{dose:g} counts/px, seed {f['seed']}", fontsize=8)
            for mi, method in enumerate(methods):
                ax = row[1 + mi]
                r = f["fits"].get(method)
                if r is None:
                    ax.axis("off")
                    continue
                ax.imshow(r["_maps"][j], vmin=0, vmax=vmax, cmap="viridis")
                ax.set_title(f"{method}\nMSE {r['mse'][j]:.4f}, {r['angles'][j]:.1f}°", fontsize=8)
            for ax in row[:-1]:
                ax.set_xticks([])
                ax.set_yticks([])
            ax = row[-1]
            t = f["true_spectra"][j]
            ax.plot(e, t / t.sum(), color="0.6", lw=3, label="truth", zorder=1)
            for method in methods:
                r = f["fits"].get(method)
                if r is None:
                    continue
                c0, c1 = r["_channels"]
                sp = r["_spectra"][j]
                scale = float(sp @ t[c0:c1]) / float(sp @ sp) / t.sum()  # least squares on truth
                ax.plot(e[c0:c1], sp * scale, color=colours[method], lw=0.7, label=method,
                        zorder=2)  # fmt: skip
            ax.set_xlim(0.3, 10.0)
            ax.set_title(f"{phase}: spectra scaled to the truth (unit sum)", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0 and di == 0:
                ax.legend(fontsize=7)
        axes[di * k + k - 1][-1].set_xlabel("energy (keV)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="noise seeds (0 1 2 3 4)")
    p.add_argument("--doses", type=float, nargs="+", default=[293.0, 18.0])
    p.add_argument("--size", type=int, default=None, help="map side, pixels (128)")
    p.add_argument("--methods", nargs="+", default=["default", "paper", "sklearn"],
                   choices=METHODS)  # fmt: skip
    p.add_argument("--sklearn-seeds", type=int, nargs="+", default=None,
                   help="seeds fitted by scikit-learn (default: all)")  # fmt: skip
    p.add_argument("--sklearn-long-iter", type=int, default=1000)
    p.add_argument("--sklearn-long-seeds", type=int, nargs="+", default=None,
                   help="seeds fitted by sklearn-long (default: the first)")  # fmt: skip
    p.add_argument("--sklearn-tol", type=float, default=0.0,
                   help="scikit-learn's tol (0: run max_iter iterations; sklearn's own "
                        "default 1e-4 stops early)")  # fmt: skip
    p.add_argument("--max-iter", type=int, default=None, help="smart_nmf max_iter override")
    p.add_argument("--quick", action="store_true", help="64 × 64 pixels, seeds 0 1")
    p.add_argument("--figure", default="validate_paper.png", help="'' for none")
    p.add_argument("--json", default=None, help="write all numbers to this file")
    args = p.parse_args(argv)
    if args.size is None:
        args.size = 64 if args.quick else 128
    if args.seeds is None:
        args.seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    if args.sklearn_seeds is None:
        args.sklearn_seeds = list(args.seeds)
    if args.sklearn_long_seeds is None:
        args.sklearn_long_seeds = args.seeds[:1]
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    shape = (args.size, args.size)
    print(
        f"reference sample {shape[0]} × {shape[1]}, doses {args.doses}, seeds {args.seeds}, "
        f"methods {args.methods}; {os.cpu_count()} CPUs"
    )
    results: list[dict] = []
    figs: dict = {}
    phases: list[str] = []
    t_all = time.perf_counter()
    header_done = False
    for dose in args.doses:
        for seed in args.seeds:
            s = reference_sample(dose=dose, shape=shape, random_state=seed)
            truth = get_truth(s)
            phases = [str(n) for n in truth["phase_names"]]
            if not header_done:
                print_header(phases)
                header_done = True
            fits = {}
            for method in args.methods:
                opts = {} if args.max_iter is None else {"max_iter": args.max_iter}
                if method == "default":
                    r = run_smart(s, opts)
                elif method == "model":
                    r = run_smart(s, {"smoothing": "model", **opts})
                elif method == "paper":
                    r = run_smart(s, {**PAPER, **opts})
                elif method == "sklearn":
                    if seed not in args.sklearn_seeds:
                        continue
                    r = run_sklearn(s, 200, seed, args.sklearn_tol)
                else:
                    if seed not in args.sklearn_long_seeds:
                        continue
                    r = run_sklearn(s, args.sklearn_long_iter, seed, args.sklearn_tol)
                r.update(method=method, dose=float(dose), seed=int(seed), load=os.getloadavg()[0])
                results.append(r)
                fits[method] = r
                print(_fmt_row(method, dose, seed, r), flush=True)
            if dose not in figs:
                ax = s.axes_manager.signal_axes[0]
                energies = float(ax.offset) + float(ax.scale) * np.arange(ax.size)
                figs[dose] = {
                    "seed": seed,
                    "true_maps": np.asarray(truth["maps"], dtype=float),
                    "true_spectra": np.asarray(truth["spectra"], dtype=float),
                    "energies": energies,
                    "fits": fits,
                }
            else:
                for r in fits.values():  # keep the arrays of the figure's seed only
                    for key in ("_spectra", "_maps"):
                        r.pop(key, None)
    total = time.perf_counter() - t_all
    print()
    print(summarise(results, phases))
    print(f"\ntotal {total / 60:.1f} min")
    if args.json:
        clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
        meta = {"size": args.size, "doses": args.doses, "seeds": args.seeds,
                "cpus": os.cpu_count(), "total_seconds": total}  # fmt: skip
        Path(args.json).write_text(json.dumps({"run": meta, "results": clean}, indent=1))
        print(f"numbers: {args.json}")
    if args.figure:
        make_figure(figs, Path(args.figure), phases)
        print(f"figure: {args.figure}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
