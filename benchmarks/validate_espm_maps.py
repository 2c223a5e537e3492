"""The defaults and ``estimate_n_phases`` on maps espm's simulator made (``make_espm_maps.py``).

Not a test: ``python benchmarks/validate_espm_maps.py DIR [--maps NAME ...] [--no-k]``, where
DIR holds the folders ``make_espm_maps.py`` wrote (``sample.hspy`` and ``truth.npz``, the layout
of ``shared/data/independent/``). For each map: ``s.estimate_n_phases()`` with its defaults
(max_phases 6; skipped with ``--no-k``), then ``s.decomposition(algorithm="smart_nmf",
output_dimension=k)`` at the true k with the defaults, scored as ``validate_calibration.py``
scores the shared independent maps (:func:`esmpy_hs.metrics.score`: the angle of each true
spectrum with its matched component over the fitted channels, the map MSE, the largest at.%
error of a major element), and the largest share of a pixel each fitted phase reaches (a phase
below 0.9 is listed as never pure under the tables) next to the truth's.
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


def run_map(folder: Path, estimate_k: bool) -> dict:
    from validate_calibration import fit_independent, load_independent

    out: dict = {}
    if estimate_k:
        s, k = load_independent(folder)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["suggested_k"] = int(s.estimate_n_phases(print_info=False))
        out["k_seconds"] = time.perf_counter() - t0
        curve = s.metadata.SmartNMF_n_phases.as_dictionary()
        out["k_curve"] = [round(float(v), 5) for v in curve["deviance"]]
    s, k = load_independent(folder)
    out["k"] = k
    out.update(fit_independent(s, k, "auto"))
    sm = s.metadata.SmartNMF
    out["largest_share"] = [round(float(v), 3) for v in sm.get_item("largest_share", [])]
    truth = np.load(folder / "truth.npz")
    out["true_largest_share"] = [round(float(v), 3) for v in
                                 truth["true_maps"].reshape(k, -1).max(axis=1)]  # fmt: skip
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--maps", nargs="*", default=None)
    p.add_argument("--no-k", action="store_true", help="skip estimate_n_phases")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    root = Path(args.folder)
    names = args.maps or sorted(d.name for d in root.iterdir() if (d / "truth.npz").exists())
    out = {}
    for name in names:
        r = run_map(root / name, not args.no_k)
        out[name] = r
        ang = " ".join(f"{a:5.1f}" for a in r["angles"])
        k_text = (f"suggested k {r['suggested_k']} ({r['k_seconds']:.0f} s)"
                  if "suggested_k" in r else "")  # fmt: skip
        print(f"{name:<14} k {r['k']}  {k_text}  mean {r['mean_angle']:5.2f}°  [{ang}]  "
              f"MSE {r['mean_mse']:.4f}  max|Δat.%| {r['max_major_error']:5.2f}  "
              f"{r['n_iter']} it  {r['seconds']:.1f} s  largest share {r['largest_share']} "
              f"(truth {r['true_largest_share']})", flush=True)  # fmt: skip
        for phase, errs in r["major_errors"].items():
            print(f"{'':<16}{phase}: " + ", ".join(f"{el} {v:.2f}" for el, v in errs.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
