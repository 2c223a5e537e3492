"""The smoothing of the model's counts (``smoothing="model"``) against the shares' Laplacian.

Not a test: ``python benchmarks/validate_smoothing.py [--maps NAME ...] [--real] [--json F]``
fits every map of ``shared/data/independent/`` (another simulator; ground truth attached as in
``validate_calibration.py``) with ``s.decomposition(algorithm="smart_nmf", output_dimension=k)``
twice, ``smoothing="shares"`` (the default) and ``smoothing="model"``, everything else at the
defaults (the detector calibration included), and with ``--real`` the real 71 GPa map (100 nm,
4.5 g/cm³, as ``validate_real_map.py``'s absorption setting) the same two ways. The matrix cells
of the project's simulator are run by ``validate_matrix.py --option smoothing=model``.

Printed per fit: the spectral angle of each true phase with its matched component (°), the mean
abundance-map MSE, the largest at.% error of a major element and the seconds; for the real map
the ratios ``validate_real_map.py`` reads per identified mineral (O/Si and (Mg+Fe)/Si of the
bridgmanite, O/(Mg+Fe) and the Si and Ca at.% of the ferropericlase, Ca/Si of the
Ca-perovskite), "(out)" after a mineral outside its windows. Figures: docs/validation.rst,
"Smoothing the model's counts in the engine".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from validate_calibration import MAPS, SHARED, fit_independent, fit_real, load_independent  # noqa: E402

FORMS = ("shares", "model")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--maps", nargs="*", default=list(MAPS))
    p.add_argument("--forms", nargs="+", default=list(FORMS), choices=list(FORMS))
    p.add_argument("--real", action="store_true", help="also the real 71 GPa map")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    out: dict = {"independent": {}, "real": {}}
    for name in args.maps:
        for form in args.forms:
            s, k = load_independent(SHARED / "independent" / name)
            r = fit_independent(s, k, "auto", smoothing=form)
            out["independent"].setdefault(name, {})[form] = r
            angles = ", ".join(f"{a:.1f}" for a in r["angles"])
            print(f"{name:22s} {form:7s} angles {angles:20s} mean {r['mean_angle']:5.1f}  "
                  f"MSE {r['mean_mse']:.5f}  worst at.% {r['max_major_error']:5.1f}  "
                  f"{r['n_iter']:5d} it  {r['seconds']:6.0f} s", flush=True)  # fmt: skip
    if args.real:
        for form in args.forms:
            r = fit_real(SHARED / "71GPa_experimental_data.hspy", "auto", smoothing=form)
            out["real"][form] = r
            reads = "; ".join(f"{v['mineral']} {v['ratios']}{'' if v['ok'] else ' (out)'}"
                              for v in r["phases"].values())  # fmt: skip
            print(f"real 71 GPa map        {form:7s} {reads}  {r['n_iter']} it  "
                  f"{r['seconds']:.0f} s", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return out


if __name__ == "__main__":
    main()
