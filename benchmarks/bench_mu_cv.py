"""Is the sparsity prior right for this map? ``s.estimate_mu`` against the truth (issue 16).

Not a test. For each map: ``estimate_mu(k)`` (the default μ against 0, three count splits) and
the per-split difference of held-out deviance per count (μ = 0 minus the default: positive means
the prior predicts the other half better); then a default fit and, when the choice is not the
default, a fit with the chosen μ, both scored against the truth (spectral angle of each true
phase with its matched component, abundance-map MSE). The time of the choice is given as a
ratio to the default fit's, measured in the same process. Maps: cells of
``validate_matrix.py`` (64 × 64), ``../shared/data/independent/`` and folders of
``make_espm_maps.py`` (each with ``sample.hspy`` and ``truth.npz``; their own k); ``--real``
adds the choice alone on the real 71 GPa map (no truth; k = 3, the file's metadata).
``--shares`` prints, instead, the share of the counts behind the dominant cluster that decides
whether ``decomposition`` makes the choice itself (``esmpy_hs.signals._prior_cv.auto_mu``)::

    python benchmarks/bench_mu_cv.py --cells "heavy spread phases" "mantle particles 0.5" \\
        --independent particles_N500_w1 --espm-dir /tmp/espm_maps --espm k3_laplacian
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
INDEPENDENT = REPO.parent / "shared" / "data" / "independent"


def _maps(args):
    from bench_lambda_cv import _maps as matrix_and_independent
    from validate_calibration import load_independent

    yield from matrix_and_independent(args)
    for name in args.espm:
        s, k = load_independent(Path(args.espm_dir) / name)
        t = s.metadata.ESMPY_truth
        maps = np.asarray(t.maps)
        yield f"espm/{name}", s, k, np.asarray(t.spectra), maps.reshape(maps.shape[0], -1)


def _share(s, k: int) -> tuple[float, int, float]:
    """(share behind the dominant cluster, blocks, mean counts per pixel) with the model of a
    default decomposition of ``s``."""
    from esmpy_hs.nmf._data import as_compact
    from esmpy_hs.nmf._init import dominant_mixed_share
    from esmpy_hs.signals._calibration import calibrate_signal
    from esmpy_hs.signals._decomposition import _navigation_grid, build_model

    model, (c0, c1), _ = build_model(s, calibration=calibrate_signal(s, "auto"))
    X = np.asarray(s.data).reshape(-1, s.data.shape[-1])[:, c0:c1]
    share, blocks = dominant_mixed_share(as_compact(X, float_dtype=np.float64),
                                         np.asarray(model.G, dtype=np.float64), k,
                                         tuple(_navigation_grid(s)))  # fmt: skip
    return share, blocks, float(X.sum()) / X.shape[0]


def main() -> None:
    from bench_lambda_cv import _fit, _score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="*", default=[])
    p.add_argument("--independent", nargs="*", default=[])
    p.add_argument("--espm", nargs="*", default=[], help="map folders under --espm-dir")
    p.add_argument("--espm-dir", default=".")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", type=int, default=3)
    p.add_argument("--real", action="store_true", help="also the real 71 GPa map (choice only)")
    p.add_argument("--shares", action="store_true", help="only the shares that trigger the check")
    p.add_argument("--vendor", nargs="*", default=[], help="with --shares: files of ../shared/"
                   "data/vendor/ (k = 3)")
    args = p.parse_args()
    if args.shares:
        import hyperspy.api as hs

        maps = [(name, s, k) for name, s, k, _, _ in _maps(args)]
        for name in args.vendor:
            s = hs.load(str(REPO.parent / "shared" / "data" / "vendor" / name))
            if isinstance(s, list):  # a file of several signals: its spectrum image
                s = next(x for x in s if x.axes_manager.signal_dimension == 1
                         and x.axes_manager.navigation_dimension == 2)
            s.set_signal_type("EDS_ESMPY")
            maps.append((f"vendor/{name}", s, 3))
        if args.real:
            s = hs.load(str(REPO.parent / "shared" / "data" / "71GPa_experimental_data.hspy"))
            s.set_signal_type("EDS_ESMPY")
            maps.append(("real 71 GPa map", s, 3))
        for name, s, k in maps:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                share, blocks, mean = _share(s, k)
            print(f"{name}: share {share:.4f} of the counts behind the dominant cluster "
                  f"({blocks} blocks, {mean:.0f} counts/px)", flush=True)  # fmt: skip
        return
    if args.real:
        import hyperspy.api as hs

        s = hs.load(str(REPO.parent / "shared" / "data" / "71GPa_experimental_data.hspy"))
        s.set_signal_type("EDS_ESMPY")
        mu = s.estimate_mu(3, n_splits=args.splits, print_info=False)
        node = s.metadata.SmartNMF_mu
        rows = np.asarray(node.scores)
        diff = " ".join(f"{1e4 * (r[1] - r[0]):+.1f}" for r in rows)
        print(f"real 71 GPa map: held-out choice μ = {mu:g} (μ = 0 − default per split, 1e-4 "
              f"per count: {diff})", flush=True)  # fmt: skip
    for name, s, k, spectra, maps in _maps(args):
        t0 = time.perf_counter()
        est = _fit(s, k)
        t_fit = time.perf_counter() - t0
        c0, c1 = s.metadata.SmartNMF.channels
        a0, m0 = _score(est, spectra, maps, c0, c1)
        t0 = time.perf_counter()
        mu = s.estimate_mu(k, n_splits=args.splits, print_info=False)
        t_cv = time.perf_counter() - t0
        node = s.metadata.SmartNMF_mu
        values = list(node.values)
        default = values.index(float(node.default))
        zero = values.index(0.0) if 0.0 in values else None
        rows = np.asarray(node.scores)
        diff = "" if zero is None else " ".join(
            f"{1e4 * (r[zero] - r[default]):+.1f}" for r in rows
        )
        if mu != node.default:
            est1 = _fit(s, k, mu=mu)
            a1, m1 = _score(est1, spectra, maps, c0, c1)
            chosen = (f"angles {', '.join(f'{a:.2f}' for a in a1)}°, map MSE {m1:.5f}")
        else:
            chosen = "the default"
        print(f"{name}: held-out choice μ = {mu:g} (μ = 0 − default per split, 1e-4 per count: "
              f"{diff}; the choice took {t_cv / t_fit:.2f} default fits)\n"
              f"    default: angles {', '.join(f'{a:.2f}' for a in a0)}°, map MSE {m0:.5f}; "
              f"chosen: {chosen}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
