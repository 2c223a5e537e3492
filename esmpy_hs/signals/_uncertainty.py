"""``quantify_phases(uncertainty="splits")``: the spread of refits over count splits.

The counting error of :meth:`EDSespm.quantify_phases` is the Poisson floor of the counts given
to each element; it ignores how much the *fit* moves with the noise (the spectra and maps are
fitted together, the priors pull, the start differs). Count splitting measures that directly:
each count goes to one of two halves A and B with probability ½, so A and B are independent maps
of the same expected counts at half the dose (:func:`esmpy_hs.nmf._split.split_counts`). The
fit is repeated on A and on B, with the options of the stored fit; for a composition c,
Var(c_A − c_B) = 2 σ²_half and a half-dose fit's σ is √2 × the full-dose one, so
σ²_full ≈ mean over splits of (c_A − c_B)² / 4. Phases are matched to the stored fit's by
composition.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: metadata node of the last split uncertainty
NODE = "SmartNMF_uncertainty"


def _refit_params(parameters: dict) -> dict:
    from esmpy_hs.nmf._plan import PARAMETERS

    if parameters.get("fixed_W") is not None or parameters.get("simplex") == "W":
        raise ValueError(
            "uncertainty='splits' refits the map without phase priors; it is not available "
            "for a fit with phases={...} priors"
        )
    skip = {"G", "n_components", "simplex_rows", "callback", "fixed_H", "progress"}
    out = {k: v for k, v in parameters.items() if k in PARAMETERS and k not in skip}
    if not isinstance(out.get("init", "auto"), str):
        out.pop("init")
    if out.get("shape_2d") is not None:
        out["shape_2d"] = tuple(out["shape_2d"])
    out["progress"] = False
    return out


def _match(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Column order of ``other`` (elements × k) that best matches ``reference`` (L1 distance)."""
    from scipy.optimize import linear_sum_assignment

    cost = np.nan_to_num(np.abs(reference[:, :, None] - other[:, None, :]), nan=1.0).sum(axis=0)
    _, cols = linear_sum_assignment(cost)
    return cols


def split_uncertainty(signal, family: str | None = None, *, n_splits: int = 2,
                      random_state: Any = 0, absorption_every: int = 10):  # fmt: skip
    """The stored fit's compositions with the split spread added to the counting error.

    Returns
    -------
    esmpy_hs.physics.Quantification
        ``atomic_errors``/``weight_errors`` are √(counting² + split²); the two parts are
        ``counting_atomic_errors``/``split_atomic_errors`` (and the ``weight`` twins).
    """
    from esmpy_hs.nmf._split import split_counts
    from esmpy_hs.signals._decomposition import physics_estimator
    from esmpy_hs.signals._priors import parse_phases
    from esmpy_hs.signals._record import require_record

    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 1:
        raise ValueError(f"n_splits must be an integer ≥ 1, got {n_splits!r}")
    rec = require_record(signal)
    model = rec.physics_model()
    q = rec.quantification(family, model)
    params = _refit_params(rec.parameters)
    if params.get("spectra_from", "auto") == "auto" and rec.spectra_from in ("pixels", "blocks"):
        params["spectra_from"] = rec.spectra_from  # the same estimator at half the dose
    k = rec.k
    c0, c1 = rec.channels
    X = np.asarray(signal.data[..., c0:c1]).reshape(-1, c1 - c0)
    if X.size and (X.min() < 0 or not np.all(X == np.round(X))):
        raise ValueError("uncertainty='splits' splits the counts: the data must be integer counts")
    X = X.astype(np.int64)
    rng = np.random.default_rng(random_state)

    def fit(counts):
        est = physics_estimator(model, parse_phases(None, k, model), k, dict(params),
                                absorption_every)  # fmt: skip
        est.fit(counts)
        part = dataclasses.replace(rec, W=est.W_, H_sums=est.H_.sum(axis=1))
        qq = part.quantification(family, model)
        order = _match(q.atomic_fractions, qq.atomic_fractions)
        return qq.atomic_fractions[:, order], qq.weight_fractions[:, order]

    d_at, d_wt = [], []
    for _ in range(n_splits):
        A, B = split_counts(X, rng)
        a_at, a_wt = fit(A)
        b_at, b_wt = fit(B)
        d_at.append(a_at - b_at)
        d_wt.append(a_wt - b_wt)
    s_at = np.sqrt(np.mean(np.square(d_at), axis=0) / 4.0)
    s_wt = np.sqrt(np.mean(np.square(d_wt), axis=0) / 4.0)
    out = dataclasses.replace(
        q,
        atomic_errors=np.hypot(q.atomic_errors, s_at),
        weight_errors=np.hypot(q.weight_errors, s_wt),
        notes=[*q.notes, f"errors: counting ⊕ spread of refits over {n_splits} count split(s)"],
    )
    out.counting_atomic_errors = q.atomic_errors
    out.counting_weight_errors = q.weight_errors
    out.split_atomic_errors = s_at
    out.split_weight_errors = s_wt
    signal.metadata.set_item(NODE, {
        "elements": list(q.elements),
        "phase_names": list(q.phase_names),
        "split_atomic_errors": s_at,
        "split_weight_errors": s_wt,
        "n_splits": int(n_splits),
    })  # fmt: skip
    return out
