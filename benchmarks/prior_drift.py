"""Which way do the priors move a fit started at the ground truth? (issue 14)

For a cell of ``validate_matrix.py`` the true spectra (on the fit's G) and the true maps are
given as ``init``; the fit then runs with each setting and no final move to the composition
bound. Printed per setting: the angles of the true phases with their matched components (°),
the spread of each matched abundance map over the truth's (standard deviation over the pixels,
fitted / true: below 1 the maps were contracted towards their mean, which the spectra pay for by
moving away from their mean), the change of each phase's mean abundance ("share"), the Poisson
deviance of the fitted counts and the iterations.

Usage::

    python benchmarks/prior_drift.py "mantle spread phases"
    python benchmarks/prior_drift.py "mantle particles 0.5" --settings '{"mu=0": {"mu": 0}}'
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
from validate_matrix import CELLS, deviance, make_cell, truth_start

from esmpy_hs.metrics import score

SETTINGS = {
    "defaults": {},
    "mu=0": {"mu": 0.0},
    "lambda_L=0": {"lambda_L": 0.0},
    "mu=0, lambda_L=0": {"mu": 0.0, "lambda_L": 0.0},
}


def _fit(cell: str, k: int, options: dict, seed: int):
    s = make_cell(cell, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False, **options)
    return s


def drift(cell: str, settings: dict, seed: int = 0) -> list[dict]:
    """One row per setting (see the module)."""
    k = CELLS[cell][1]
    W0, H0 = truth_start(_fit(cell, k, {"max_iter": 5}, seed))
    rows = []
    for name, options in settings.items():
        s = _fit(cell, k, {**options, "init": (W0, H0), "final_extrapolation": 0}, seed)
        H = np.asarray(s.learning_results.loadings).T
        corr = np.corrcoef(np.vstack([H0, H]))[:k, k:]
        match = [int(np.nanargmax(corr[i])) for i in range(k)]
        spread = [round(float(H[match[i]].std() / H0[i].std()), 3) for i in range(k)]
        share = [round(float(H[match[i]].mean() - H0[i].mean()), 3) for i in range(k)]
        rows.append(
            {
                "setting": name,
                "angles": [round(float(a), 1) for a in score(s, quantify=False).angles],
                "spread": spread,
                "share": share,
                "deviance": round(deviance(s)),
                "iterations": int(s.metadata.SmartNMF.n_iter),
            }
        )
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cell", choices=list(CELLS))
    p.add_argument("--settings", default=None, help="JSON: name → decomposition options")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    settings = SETTINGS if args.settings is None else json.loads(args.settings)
    for row in drift(args.cell, settings, args.seed):
        print(args.cell, "|", " | ".join(f"{key} {value}" for key, value in row.items()),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
