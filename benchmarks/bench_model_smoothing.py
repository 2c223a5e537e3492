"""Cost per iteration of ``smoothing="model"`` against the shares' Laplacian, same process.

Not a test: ``python benchmarks/bench_model_smoothing.py [--size 128] [--iter 200]
[--repeat 3]`` fits the reference sample (293 counts per pixel, seed 0) with the estimator
behind ``decomposition`` — the fit's G, ``tol=0`` so that every fit runs ``--iter`` iterations —
alternately with ``smoothing="shares"`` and ``"model"``, and prints the median seconds per
iteration of each (``iteration_times_``) and their ratio. The machines are shared: read the
ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from esmpy_hs.datasets import reference_sample


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iter", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    s = reference_sample(dose=293.0, shape=(args.size, args.size), random_state=0)
    per_it: dict[str, list[float]] = {"shares": [], "model": []}
    for _ in range(args.repeat):
        for form in per_it:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = s.decomposition(algorithm="smart_nmf", output_dimension=3,
                                      print_info=False, return_info=True, smoothing=form,
                                      tol=0.0, max_iter=args.iter, mu=0.01)  # fmt: skip
            per_it[form].append(float(np.median(est.iteration_times_)))
    a, b = np.median(per_it["shares"]), np.median(per_it["model"])
    print(f"reference sample {args.size}², {args.iter} iterations, {args.repeat} repeats: "
          f"shares {1e3 * a:.2f} ms/iteration, model {1e3 * b:.2f} ms/iteration, "
          f"ratio {b / a:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
