"""The sparsity prior on the share or on the counts (issue 14): the maps with a truth.

Not a test: ``python benchmarks/compare_sparsity.py [--option KEY=VALUE ...] [--maps ...]``
runs the default fit (plus the options, e.g. ``--option sparsity_on=counts``) of the four
independent maps (``../shared/data/independent``, their own k) and of the reference sample
128² at 293 and 18 counts per pixel (seed 0, k = 3), and prints per map the spectral angle of
each true phase with its matched component, their mean, the mean abundance-map MSE, the largest
at.% error of a major element, each phase's counts of a pure pixel over the 99th percentile of
the fitted pixels' counts, the abundance shares, the iterations and the seconds. Figures:
docs/validation.rst, "The prior on the counts in the engine".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
INDEPENDENT = ("paper_N293_s1", "paper_N18_s1", "paper_N293_narrow_s2", "particles_N500_w1")
REFERENCE = ("ref293", "ref18")


def parse_option(text: str):
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def fit(name: str, options: dict) -> dict:
    from validate_paper import major_elements

    from esmpy_hs.datasets import get_truth, reference_sample
    from esmpy_hs.metrics import score
    from esmpy_hs.signals._record import read_record

    if name in REFERENCE:
        s, k = reference_sample(float(name[3:]), random_state=0), 3
    else:
        from validate_calibration import load_independent

        s, k = load_independent(DATA / "independent" / name)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = s.decomposition(algorithm="smart_nmf", output_dimension=k, print_info=False,
                              return_info=True, **options)  # fmt: skip
    seconds = time.perf_counter() - t0
    sc = score(s)
    q = s.quantify_phases()
    truth = get_truth(s)
    majors = major_elements(truth["compositions"], q.elements)
    err = max(float(sc.composition_errors[n][el]) for n in sc.phase_names for el in majors[n])
    rec = read_record(s)
    return {
        "map": name, "angles": [float(a) for a in sc.angles], "mean_angle": float(sc.mean_angle),
        "mean_mse": float(sc.mean_mse), "max_major_error": err,
        "ratio": (rec.pure_counts / rec.pixel_counts).tolist(),
        "share": (100 * rec.H_sums / rec.H_sums.sum()).tolist(),
        "n_iter": int(est.n_iter_), "seconds": seconds,
    }  # fmt: skip


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--maps", nargs="+", default=[*INDEPENDENT, *REFERENCE],
                   choices=[*INDEPENDENT, *REFERENCE])  # fmt: skip
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    options = dict(parse_option(o) for o in args.option)
    print(f"options {options}", flush=True)
    out = []
    for name in args.maps:
        r = fit(name, options)
        out.append(r)
        print(f"{name:22s} angles {np.round(r['angles'], 2).tolist()} mean {r['mean_angle']:.2f}° "
              f"MSE {r['mean_mse']:.4f} major err {r['max_major_error']:.2f} at.% pure/p99 "
              f"{np.round(r['ratio'], 2).tolist()} share {np.round(r['share'], 3).tolist()} % "
              f"it {r['n_iter']} {r['seconds']:.0f} s", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
