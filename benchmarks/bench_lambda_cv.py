"""Does λ chosen by held-out counts (``s.estimate_lambda``) beat the dose formula? (issue 16)

Not a test. For each map: a default fit (λ of the dose formula) and, when ``estimate_lambda``
picks another factor, a fit with its λ; both scored against the truth (spectral angle of each true
phase with its matched component, abundance-map MSE). Cells of ``validate_matrix.py`` (64 × 64,
seed 0) and the maps of ``../shared/data/independent/`` (their own metadata, k = 3)::

    python benchmarks/bench_lambda_cv.py --cells "mantle particles 0.5" --independent paper_N18_s1
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


def _fit(s, k: int, **params):
    from esmpy_hs.signals._decomposition import smart_nmf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = smart_nmf(s, k, print_info=False, progress=False, **params)
    return out["estimator"]


def _score(est, spectra, maps, c0, c1):
    from esmpy_hs.metrics import map_mse, match_phases, spectral_angle

    true = spectra[:, c0:c1]
    m = match_phases(true, est.components_, maps, est.H_)
    perm = list(m.permutation)
    angles = [float(spectral_angle(true[i], est.components_[j])) for i, j in enumerate(perm)]
    return angles, float(map_mse(maps, est.H_[perm], renormalise=True))


def _maps(args):
    import hyperspy.api as hs
    from validate_matrix import CELLS, make_cell

    from esmpy_hs.datasets import get_truth

    for name in args.cells:
        s = make_cell(name, args.seed)
        t = get_truth(s)
        spectra = np.asarray(t["spectra"])
        maps = np.asarray(t["maps"])
        yield name, s, CELLS[name][1], spectra, maps.reshape(maps.shape[0], -1)
    for name in args.independent:
        s = hs.load(str(INDEPENDENT / name / "sample.hspy"))
        s.set_signal_type("EDS_ESMPY")
        t = np.load(INDEPENDENT / name / "truth.npz")
        maps = t["true_maps"]
        yield f"independent/{name}", s, 3, t["true_spectra"].T, maps.reshape(maps.shape[0], -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="*", default=[])
    p.add_argument("--independent", nargs="*", default=[])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", type=int, default=2)
    args = p.parse_args()
    for name, s, k, spectra, maps in _maps(args):
        t0 = time.perf_counter()
        est = _fit(s, k)
        c0, c1 = s.metadata.SmartNMF.channels
        a0, m0 = _score(est, spectra, maps, c0, c1)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        lam = s.estimate_lambda(k, n_splits=args.splits, print_info=False)
        t_cv = time.perf_counter() - t0
        node = s.metadata.SmartNMF_lambda
        d = np.asarray(node.deviance)
        curve = " ".join(f"{f:g}: {v:.5f}" for f, v in zip(node.factors, d - d.min(), strict=True))
        if node.factor != 1.0:
            est1 = _fit(s, k, lambda_L=lam)
            a1, m1 = _score(est1, spectra, maps, c0, c1)
        else:
            a1, m1 = a0, m0
        print(f"{name}: formula λ = {est.lambda_L_:.4g}: angles "
              f"{', '.join(f'{a:.2f}' for a in a0)}°, map MSE {m0:.5f} ({t_fit:.0f} s); "
              f"held-out choice {node.factor:g} × formula = {lam:.4g}: angles "
              f"{', '.join(f'{a:.2f}' for a in a1)}°, map MSE {m1:.5f} (choice {t_cv:.0f} s)\n"
              f"    held-out deviance − min by factor: {curve}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
