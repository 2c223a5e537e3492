"""Where the reference sample's angle at 293 counts per pixel comes from (issue 14).

Not a test: ``python benchmarks/diagnose_reference.py --seed 0`` fits the 128 × 128 reference
sample (:func:`esmpy_hs.datasets.reference_sample`) with the signal-level defaults and with one
thing changed at a time, and prints per fit:

* the angle of each true phase with its matched component (degrees, over the fitted channels)
  and the mean map MSE, the iterations and the start's and final moves;
* the **model floor**: each true phase spectrum fitted by non-negative least squares on the
  fit's own G (calibration and absorption included) — the angle the truth itself has under
  that G. A fit far above its floor is off because of the fit (start, priors, identifiability),
  not the model;
* the objective F (Poisson KL + Laplacian + log-sparsity, the fit's scale and priors) at the
  fit and at the truth fitted on the same G (true maps): F(fit) < F(truth) means the priors'
  optimum is not the truth (a bias), F(fit) > F(truth) that the fit stopped in a worse point
  than the truth (an optimisation failure).

Variants (``--variants``): ``default``; ``no_calibration`` (``calibrate=False``: the file's
130 eV Fiori width law, which is the simulator's own detector); ``from_truth`` (the true
spectra fitted on the default fit's G, the true maps); ``no_final`` (``final_extrapolation=0``);
``no_mixed_move`` (the start's move of a minor cluster mixed with phases other than the anchor
turned off, :data:`esmpy_hs.nmf._init.MIXED_MOVE`, as before commit 7f6bbea); ``lam_half``,
``lam_double`` (λ half and twice the dose formula's); ``mu0``, ``mu_half``, ``mu_double`` (μ = 0,
0.005, 0.02); ``no_start_move`` (``init_extrapolation=0``). ``--dose`` and ``--size`` change
the map; ``--json`` writes every number. ``--before`` runs every variant with the start of
before issue 14's fix (``_init.DEFER_TO_FINAL`` and ``_init.MIXED_MAINLY_OTHERS`` False: the
mixed move of any cluster with a partner besides the anchor, then half way from the anchor).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from scipy.optimize import nnls

from esmpy_hs.datasets import get_truth, reference_sample
from esmpy_hs.metrics import score, spectral_angle

VARIANTS = ("default", "no_calibration", "from_truth", "no_final", "no_mixed_move",
            "no_start_move", "lam_half", "lam_double", "mu0", "mu_half", "mu_double")  # fmt: skip


def truth_on_G(est, perm, truth_spectra: np.ndarray) -> np.ndarray:
    """(m, k) the true spectra fitted by NNLS on the fit's G, in the order of the fit's phases
    (true phase i ↔ fitted component perm[i]); W in the units of ``est.W_``."""
    G = np.asarray(est.G_, dtype=np.float64)
    k = truth_spectra.shape[0]
    W = np.zeros((G.shape[-1], k))
    for i in range(k):
        j = int(perm[i])
        Gj = G if G.ndim == 2 else G[j]
        cs = np.linalg.norm(Gj, axis=0)
        cs = np.where(cs > 0, cs, 1.0)
        w, _ = nnls(Gj / cs, truth_spectra[i], maxiter=50 * Gj.shape[1])
        W[:, j] = w / cs
    return W


def spectra_of(G: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(channels, k) G·W per phase."""
    G = np.asarray(G, dtype=np.float64)
    if G.ndim == 2:
        return G @ W
    return np.einsum("jnm,mj->nj", G, W)


def objective(s, est, D: np.ndarray, H: np.ndarray) -> tuple[float, float]:
    """(F, KL part) of spectra D (channels × k, counts per unit abundance) and maps H (k × p)
    under the fit's scale and priors (:func:`esmpy_hs.nmf._objective.objective_dense`)."""
    from esmpy_hs.nmf._laplacian import grid_adjacency
    from esmpy_hs.nmf._objective import objective_dense

    c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
    Y = s.data.reshape(-1, s.data.shape[-1])[:, c0:c1].T.astype(np.float64)
    plan = est.plan_
    st = plan.settings
    scale = float(est.scale_)
    adj = grid_adjacency(st.shape)
    kw = dict(inv_scale=1.0 / scale, mu=st.mu, eps_reg=st.eps_reg)
    F = objective_dense(Y, D / scale, H, lam=float(est.lambda_L_), adjacency=adj, **kw)
    kl = objective_dense(Y, D / scale, H, lam=0.0, **{**kw, "mu": 0.0})
    return F, kl


def fit(dose: float, seed: int, size: int, options: dict, patch=None):
    from esmpy_hs.nmf import _init

    s = reference_sample(dose, shape=(size, size), random_state=seed)
    old = _init.MIXED_MOVE
    if patch is not None:
        _init.MIXED_MOVE = patch
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = s.decomposition(algorithm="smart_nmf", output_dimension=3, print_info=False,
                                  return_info=True, **options)  # fmt: skip
    finally:
        _init.MIXED_MOVE = old
    return s, est, time.perf_counter() - t0


def report(name: str, s, est, seconds: float) -> dict:
    sc = score(s, quantify=False)
    perm = list(sc.permutation)
    truth = get_truth(s)
    c0, c1 = (int(c) for c in s.metadata.SmartNMF.channels)
    T = np.asarray(truth["spectra"], dtype=np.float64)[:, c0:c1]
    Ht = np.asarray(truth["maps"], dtype=np.float64).reshape(T.shape[0], -1)
    Wt = truth_on_G(est, perm, T)
    Dt = spectra_of(est.G_, Wt)  # the truth on the fit's G, fitted components' order
    floor = [float(spectral_angle(T[i], Dt[:, perm[i]])) for i in range(T.shape[0])]
    Hperm = np.zeros_like(est.H_)
    for i in range(T.shape[0]):
        Hperm[perm[i]] = Ht[i]
    D = np.asarray(est.components_, dtype=np.float64).T
    F_fit, kl_fit = objective(s, est, D, est.H_)
    F_tr, kl_tr = objective(s, est, Dt, Hperm)
    calib = s.metadata.SmartNMF.get_item("calibration", None)
    cal = {}
    if calib is not None:
        c = json.loads(calib) if isinstance(calib, str) else dict(calib.as_dictionary())
        cal = {key: (c or {}).get(key) for key in ("offset_shift_eV", "gain")}
    r = {
        "variant": name,
        "angles": [float(a) for a in sc.angles],
        "mean_angle": float(sc.mean_angle),
        "map_mse": float(sc.mean_mse),
        "floor": floor,
        "F_fit": F_fit, "F_truth": F_tr, "KL_fit": kl_fit, "KL_truth": kl_tr,
        "n_iter": int(est.n_iter_), "final_shift": [float(b) for b in est.final_shift_],
        "lambda": float(est.lambda_L_), "calibration": cal, "seconds": seconds,
    }  # fmt: skip
    print(f"{name:>15}: {', '.join(f'{a:.3f}' for a in r['angles'])} (mean {r['mean_angle']:.3f}),"
          f" MSE {r['map_mse']:.6f}; floor {', '.join(f'{a:.3f}' for a in floor)};"
          f" F fit − truth {F_fit - F_tr:+.2f} (KL {kl_fit - kl_tr:+.2f});"
          f" {r['n_iter']} it, shift {np.round(r['final_shift'], 3).tolist()}, λ {r['lambda']:.3f},"
          f" {cal}, {seconds:.0f} s", flush=True)  # fmt: skip
    return r


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dose", type=float, default=293.0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--json", default=None)
    p.add_argument("--before", action="store_true", help="the start of before the fix")
    args = p.parse_args(argv)
    if args.before:
        from esmpy_hs.nmf import _init

        _init.DEFER_TO_FINAL = False
        _init.MIXED_MAINLY_OTHERS = False
    out = []
    lam = None
    default = None
    for name in args.variants:
        options: dict = {}
        patch = None
        if name in ("lam_half", "lam_double", "from_truth") and default is None:
            default = fit(args.dose, args.seed, args.size, {})
            lam = float(default[1].lambda_L_)
        if name == "default":
            s, est, sec = default if default is not None else fit(args.dose, args.seed,
                                                                  args.size, {})  # fmt: skip
            default = (s, est, sec)
            lam = float(est.lambda_L_)
            out.append(report(name, s, est, sec))
            continue
        if name == "no_calibration":
            options = {"calibrate": False}
        elif name == "from_truth":
            s0, est0, _ = default
            sc0 = score(s0, quantify=False)
            c0, c1 = (int(c) for c in s0.metadata.SmartNMF.channels)
            truth = get_truth(s0)
            T = np.asarray(truth["spectra"], dtype=np.float64)[:, c0:c1]
            Ht = np.asarray(truth["maps"], dtype=np.float64).reshape(T.shape[0], -1)
            perm = list(sc0.permutation)
            W0 = truth_on_G(est0, perm, T)
            H0 = np.zeros_like(est0.H_)
            for i in range(T.shape[0]):
                H0[perm[i]] = Ht[i]
            options = {"init": (W0, np.maximum(H0, 1e-9))}
        elif name == "no_final":
            options = {"final_extrapolation": 0.0}
        elif name == "no_mixed_move":
            patch = False
        elif name == "no_start_move":
            options = {"init_extrapolation": 0.0}
        elif name == "lam_half":
            options = {"lambda_L": 0.5 * lam}
        elif name == "lam_double":
            options = {"lambda_L": 2.0 * lam}
        elif name == "mu0":
            options = {"mu": 0.0}
        elif name == "mu_half":
            options = {"mu": 0.005}
        elif name == "mu_double":
            options = {"mu": 0.02}
        s, est, sec = fit(args.dose, args.seed, args.size, options, patch)
        out.append(report(name, s, est, sec))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
