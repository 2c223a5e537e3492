"""Measurements of ``estimate_n_phases`` (issue 16): suggestions, curves and time.

Not a test. Run from the repository root, e.g.::

    python benchmarks/bench_n_phases.py --sim --seeds 1 2 3 4 5      # success rate, 32 × 32
    python benchmarks/bench_n_phases.py --maps                      # reference, real, independent
    python benchmarks/bench_n_phases.py --time                      # vs one default fit

``--sim``: the small maps of ``tests/signals/test_n_phases.py`` (a matrix and k − 1 particles of
distinct chemistry, 32 × 32, 500 channels) with k = 2 … 5 at 100 and 300 counts/px; prints the
suggestion of each (k, dose, seed) and the success rate.

``--maps``: the reference sample (128 × 128, 293 and 18 counts/px, seed 1), the real 71 GPa map
and the maps of ``../shared/data/independent/`` (their own metadata; with ``--linear`` also with
``detector=Detector(fwhm_model="linear")``, the width model of the simulator that made them).

``--coverage``: a default 3-phase fit of the reference sample (293 and 18 counts/px) and of the
independent maps, ``quantify_phases(uncertainty="splits")``, and the fraction of major elements
(true fraction ≥ 5 at.%) whose true value lies within the stated 1σ, with the combined error and
with the counting error alone (``--unc-splits N``, default 2).

``--time``: one default 3-phase fit of the reference sample (293 counts/px) and
``estimate_n_phases(max_phases=6)`` on the same map, after a warm-up that compiles the kernels.

Options: ``--splits N`` (default 3), ``--max-iter N`` (default: estimate_n_phases's), ``--bin B``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def _kw(args) -> dict:
    kw = {"n_splits": args.splits, "print_info": False}
    if args.score is not None:
        kw["score"] = args.score
    if args.max_iter is not None:
        kw["max_iter"] = args.max_iter
    if args.bin is not None:
        kw["bin"] = args.bin
    for item in args.option:
        key, value = item.split("=", 1)
        kw[key] = eval(value, {})  # a number, True/False, a string in quotes
    return kw


def _report(name: str, s, k: int, seconds: float) -> None:
    node = s.metadata.SmartNMF_n_phases
    d = np.asarray(node.deviance)
    curve = " ".join(f"{v:.5f}" for v in d - d.min())
    se = " ".join(f"{v:.5f}" for v in np.asarray(node.deviance_se_diff))
    print(f"{name}: k = {k} (lowest at {node.best_k}), bin {node.bin}, {seconds:.0f} s")
    print(f"    deviance − min per k = 1..{len(d)}: {curve}")
    print(f"    paired SE:                        {se}")
    share = " ".join(f"{v:.3f}" for v in np.asarray(node.explained))
    print(f"    share of the improvement:         {share}")
    print(f"    deviance at the minimum: {d.min():.5f}", flush=True)


def run_sim(args) -> None:
    from tests.signals.test_n_phases import k_phase_map

    right = total = 0
    for seed in args.seeds:
        row = []
        for k in (2, 3, 4, 5):
            for dose in (100.0, 300.0):
                s = k_phase_map(k, dose, seed)
                got = s.estimate_n_phases(6, **_kw(args))
                row.append(f"{k}@{dose:.0f}→{got}")
                right += got == k
                total += 1
        print(f"seed {seed}: " + ", ".join(row), flush=True)
    print(f"success: {right}/{total} = {right / total:.0%}")


def _load(path: Path):
    import hyperspy.api as hs

    s = hs.load(str(path))
    s.set_signal_type("EDS_ESMPY")
    return s


def run_maps(args) -> None:
    from esmpy_hs.datasets import reference_sample
    from esmpy_hs.physics import Detector

    todo = []
    if "reference" in args.which:
        for dose in (293.0, 18.0):
            todo.append((f"reference sample, {dose:.0f} counts/px", lambda d=dose:
                         reference_sample(d, random_state=1), {}))  # fmt: skip
    if "real" in args.which:
        todo.append(("real 71 GPa map", lambda: _load(DATA / "71GPa_experimental_data.hspy"), {}))
    if "independent" in args.which:
        for folder in sorted((DATA / "independent").iterdir()):
            f = folder / "sample.hspy"
            todo.append((f"independent/{folder.name}", lambda f=f: _load(f), {}))
            if args.linear:
                todo.append((f"independent/{folder.name}, linear FWHM", lambda f=f: _load(f),
                             {"detector": Detector(fwhm_model="linear")}))  # fmt: skip
    for name, make, extra in todo:
        s = make()
        t = time.perf_counter()
        k = s.estimate_n_phases(6, **_kw(args), **extra)
        _report(name, s, k, time.perf_counter() - t)


def run_time(args) -> None:
    from esmpy_hs.datasets import reference_sample

    warm = reference_sample(293.0, shape=(32, 32), random_state=0)
    warm.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False)
    warm.estimate_n_phases(3, n_splits=1, print_info=False)
    s = reference_sample(293.0, random_state=1)
    t = time.perf_counter()
    est = s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                          return_info=True)  # fmt: skip
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    k = s.estimate_n_phases(6, **_kw(args))
    t_est = time.perf_counter() - t
    print(f"one default fit (k = 3, {est.n_iter_} iterations): {t_fit:.1f} s")
    print(f"estimate_n_phases(6): {t_est:.1f} s = {t_est / t_fit:.1f} × one fit; k = {k}")
    _report("reference 293", s, k, t_est)


def _truth(name: str, s):
    """``{element: true atomic fraction}`` per true phase (list), from the signal or truth.npz."""
    if name.startswith("independent/"):
        t = np.load(DATA / name / "truth.npz", allow_pickle=True)
        els = [str(e) for e in t["elements"]]
        return [dict(zip(els, row, strict=True)) for row in np.asarray(t["compositions"])]
    comps = s.metadata.ESMPY_truth.compositions.as_dictionary()
    return [{e: float(v) for e, v in c.items()} for c in comps.values()]


def match_by_composition(q, truth: list[dict]):
    """The true fractions T (elements × true phases, renormalised over ``q.elements``), the
    fitted ones F, and the matching (rows: true phase, cols: fitted phase) that minimises the
    summed |T − F|; an element the fit marks undetermined (NaN) counts as 1 in the matching."""
    from scipy.optimize import linear_sum_assignment

    els = list(q.elements)
    T = np.array([[c.get(e, 0.0) for c in truth] for e in els])
    T = T / T.sum(axis=0, keepdims=True)
    F = q.atomic_fractions
    cost = np.nan_to_num(np.abs(T[:, :, None] - F[:, None, :]), nan=1.0).sum(axis=0)
    rows, cols = linear_sum_assignment(cost)
    return els, T, F, rows, cols


def coverage_counts(q, truth: list[dict], major: float = 0.05) -> tuple[int, int, int, float]:
    """(covered by the combined σ, covered by the counting σ, number of major elements, mean
    |error| in at.%) after matching fitted phases to true ones by composition."""
    els, T, F, rows, cols = match_by_composition(q, truth)
    comb = cnt = n = 0
    errs = []
    for i, j in zip(rows, cols, strict=True):
        for e in range(len(els)):
            if T[e, i] >= major:
                err = abs(F[e, j] - T[e, i])
                errs.append(err)
                n += 1
                comb += err <= q.atomic_errors[e, j]
                cnt += err <= q.counting_atomic_errors[e, j]
    return comb, cnt, n, 100 * float(np.nanmean(errs))


def run_coverage(args) -> None:
    from esmpy_hs.datasets import reference_sample

    todo = []
    if "reference" in args.which:
        for dose in (293.0, 18.0):
            todo.append((f"reference {dose:.0f}", lambda d=dose: reference_sample(
                d, random_state=1)))  # fmt: skip
    if "independent" in args.which:
        for folder in sorted((DATA / "independent").iterdir()):
            todo.append((f"independent/{folder.name}", lambda f=folder: _load(f / "sample.hspy")))
    tot = [0, 0, 0]
    for name, make in todo:
        s = make()
        k = 3
        t = time.perf_counter()
        s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False)
        q = s.quantify_phases(uncertainty="splits", n_splits=args.unc_splits)
        comb, cnt, n, mean_err = coverage_counts(q, _truth(name, s))
        tot = [tot[0] + comb, tot[1] + cnt, tot[2] + n]
        print(f"{name}: major elements within 1σ: counting ⊕ splits {comb}/{n}, counting "
              f"only {cnt}/{n}; mean |error| {mean_err:.2f} at.%, mean σ (combined) "
              f"{100 * np.mean(q.atomic_errors[q.atomic_fractions >= 0.05]):.2f} at.%, "
              f"{time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
    print(f"all: counting ⊕ splits {tot[0]}/{tot[2]} = {tot[0] / max(tot[2], 1):.0%}, counting "
          f"only {tot[1]}/{tot[2]} = {tot[1] / max(tot[2], 1):.0%}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sim", action="store_true")
    p.add_argument("--maps", action="store_true")
    p.add_argument("--time", action="store_true")
    p.add_argument("--coverage", action="store_true")
    p.add_argument("--unc-splits", type=int, default=2)
    p.add_argument("--which", nargs="+", default=["reference", "real", "independent"])
    p.add_argument("--linear", action="store_true")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument("--bin", type=int, default=None)
    p.add_argument("--score", default=None, choices=["windows", "channels"])
    p.add_argument(
        "--option",
        action="append",
        default=[],
        help="KEY=VALUE passed to estimate_n_phases (e.g. warm_start=False)",
    )
    args = p.parse_args()
    if args.sim:
        run_sim(args)
    if args.maps:
        run_maps(args)
    if args.time:
        run_time(args)
    if args.coverage:
        run_coverage(args)


if __name__ == "__main__":
    main()
