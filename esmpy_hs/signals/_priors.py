"""Prior knowledge on phases, given by name: ``phases={"core": {"Fe": 0.16, "Pt": 0.84}}``.

Three kinds of prior, per phase:

* an element at 0 (``{"Si": 0}``): the W entries of that element are fixed to 0;
* a complete composition (the fractions given sum to 1; unlisted elements are 0): the phase is
  re-parametrised as one column ``G·f`` (f the atomic fractions), so only its intensity is fitted.
  In matrix form W_true[:, k] = T_k · W_param[:, k] and G_k = G · T_k; this works under every
  simplex option;
* a partial composition (fractions summing to less than 1): those W entries are fixed to the
  fractions, which needs the W simplex (``simplex="W"``, W then holds atomic fractions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_COMPLETE_TOL = 1e-3


@dataclass
class PhasePriors:
    """Phase names, fixed W entries and per-phase re-parametrisations T_k."""

    names: list[str]
    fixed_W: np.ndarray | None  #: (m, k), NaN = free
    transforms: dict[int, np.ndarray] = field(default_factory=dict)  #: k -> T_k (m, m)
    needs_W_simplex: bool = False

    def true_W(self, W: np.ndarray) -> np.ndarray:
        """W with every re-parametrised phase mapped back to element rows (W_true = T_k W)."""
        W = np.array(W, dtype=np.float64)
        for k, T in self.transforms.items():
            W[:, k] = T @ W[:, k]
        return W

    def phase_G(self, G3: np.ndarray) -> np.ndarray:
        """Per-phase G (k, n, m) with G_k = G_k · T_k for the re-parametrised phases."""
        for k, T in self.transforms.items():
            G3[k] = G3[k] @ T
        return G3


def parse_phases(phases, n_components: int, model) -> PhasePriors:
    """Turn the ``phases`` argument into names, fixed W entries and transforms.

    Parameters
    ----------
    phases : None, list of str, or mapping name -> {element: atomic fraction}
        Phase names (first phases), optionally with prior compositions.
    n_components : int
        Number of phases k.
    model : esmpy_hs.physics.PhysicsModel
        The model whose G columns the fractions refer to.

    Raises
    ------
    ValueError
        More phases than components, unknown elements, fractions outside [0, 1] or summing
        to more than 1.
    """
    k = n_components
    if phases is None:
        return PhasePriors([f"phase {i}" for i in range(k)], None)
    if isinstance(phases, str) or not isinstance(phases, Mapping | Sequence):
        raise ValueError(
            "phases must be a list of names or a mapping {name: {element: fraction}}, "
            f"got {phases!r}"
        )
    items = list(phases.items()) if isinstance(phases, Mapping) else [(n, {}) for n in phases]
    if len(items) > k:
        raise ValueError(f"{len(items)} phases given for output_dimension={k}")
    names = [str(n) for n, _ in items] + [f"phase {i}" for i in range(len(items), k)]
    if len(set(names)) != len(names):
        raise ValueError(f"phase names must be distinct, got {names}")

    m = len(model.labels)
    fixed = np.full((m, k), np.nan)
    transforms: dict[int, np.ndarray] = {}
    needs_w = False
    columns_of = {
        el: [j for j, (e, kind) in enumerate(zip(model.column_elements, model.kinds, strict=True))
             if e == el and kind == "element"]
        for el in model.elements
    }  # fmt: skip
    rows = model.element_rows
    for i, (name, comp) in enumerate(items):
        if comp is None:
            continue
        if not isinstance(comp, Mapping):
            raise ValueError(f"phase {name!r}: expected {{element: fraction}}, got {comp!r}")
        fracs = {}
        for el, v in comp.items():
            if el not in columns_of:
                known = ", ".join(model.elements)
                raise ValueError(
                    f"phase {name!r}: element {el!r} is not modelled (elements: {known}); "
                    "add it with s.add_elements([...]) or remove it from the prior"
                )
            v = float(v)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"phase {name!r}: fraction of {el} must be in [0, 1], got {v}")
            fracs[el] = v
        total = sum(fracs.values())
        if total > 1 + _COMPLETE_TOL:
            raise ValueError(
                f"phase {name!r}: atomic fractions sum to {total:.4g} > 1 (give fractions, "
                "not percentages)"
            )
        for el, v in fracs.items():
            if v == 0.0:
                fixed[columns_of[el], i] = 0.0
        if total >= 1 - _COMPLETE_TOL:
            # complete composition: one free intensity row carries G·f
            f = np.zeros(m)
            for el, v in fracs.items():
                f[columns_of[el]] = v / total
            carrier = rows[next(el for el, v in fracs.items() if v > 0)]
            T = np.zeros((m, m))
            T[:, carrier] = f
            others = [j for j in range(m) if model.kinds[j] != "element"]
            T[others, others] = 1.0  # continuum and stray rows stay free
            transforms[i] = T
            fixed[[j for j in range(m) if model.kinds[j] == "element"], i] = 0.0
            fixed[carrier, i] = np.nan
        elif total > 0:
            needs_w = True
            for el, v in fracs.items():
                fixed[rows[el], i] = v
    has_fixed = bool(np.any(~np.isnan(fixed)))
    return PhasePriors(names, fixed if has_fixed else None, transforms, needs_w)
