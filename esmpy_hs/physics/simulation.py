"""Forward simulation: the expected spectrum of a phase of known composition, consistent with G."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from esmpy_hs.physics.absorption import absorption_factor
from esmpy_hs.physics.composition import normalise_composition
from esmpy_hs.physics.continuum import continuum_basis
from esmpy_hs.physics.model import PhysicsModel, build_G

__all__ = ["simulate_spectrum"]


def simulate_spectrum(
    composition: Mapping[str, float],
    model: PhysicsModel | None = None,
    *,
    continuum: tuple[float, float] = (0.0, 0.0),
    counts: float = 1.0,
    fractions: str = "atomic",
    **build_kwargs: Any,
) -> NDArray[np.float64]:
    """Expected spectrum (counts per channel) of a phase, consistent with G.

    The characteristic part is G·w with w = atomic fractions (absorption of this very
    composition), normalised to unit sum; the continuum adds b0·B0(E)·ε·A + b1·B1(E)·ε·A
    with the raw basis functions of :func:`continuum_basis` (keV⁻¹, channel centres), i.e.
    ``continuum=(b0, b1)`` is relative to a characteristic spectrum of unit sum (the
    convention of the validation sample). The total is multiplied by ``counts``.

    Parameters
    ----------
    composition
        Element symbol → fraction. Its elements must be columns of the model (specimen or stray;
        a stray element contributes its lines without absorption); model elements absent from
        it are 0.
    model
        The :class:`PhysicsModel`. ``None``: a model is built with ``build_G(elements=
        list(composition), continuum=False, **build_kwargs)`` (``axis``, ``beam_energy``,
        ``detector``, ``specimen``, ...).
    continuum
        (b0, b1) >= 0, relative to a characteristic spectrum of unit sum.
    counts
        Total characteristic counts.
    fractions
        ``"atomic"`` (default) or ``"weight"``.

    Returns
    -------
    numpy.ndarray
        (n_channels,) expected counts per channel.
    """
    if model is None:
        kw = dict(build_kwargs)
        axis = kw.pop("axis")
        e0 = kw.pop("beam_energy")
        model = build_G(axis, e0, list(composition), continuum=False, **kw)
    elif build_kwargs:
        raise TypeError("build_G arguments are only used when model is None")
    symbols, at, _ = normalise_composition(composition, fractions)
    unknown = [s for s in symbols if s not in {*model.elements, *model.stray_elements}]
    if unknown:
        raise ValueError(f"Elements not in the model: {', '.join(unknown)}")
    frac = dict(zip(symbols, at, strict=True))
    specimen_part = {s: a for s, a in frac.items() if s in model.elements}
    if specimen_part:
        Gp = model.G_for_phases([specimen_part])[0]
    else:  # all element rows 0: the absorption-free G
        Gp = model.G_for_phases(np.zeros((model.n_columns, 1)))[0]
    w = np.array(
        [frac.get(el, 0.0) if kind != "continuum" else 0.0  # type: ignore[arg-type]
         for el, kind in zip(model.column_elements, model.kinds, strict=True)]
    )  # fmt: skip
    char = Gp @ w
    total = char.sum()
    if total > 0:
        char = char / total
    b = np.asarray(continuum, dtype=np.float64).reshape(-1)
    if b.size != 2 or np.any(b < 0):
        raise ValueError("continuum must be two non-negative coefficients (b0, b1)")
    if np.any(b > 0):
        cont_cols = [j for j, kind in enumerate(model.kinds) if kind == "continuum"]
        if cont_cols:  # the continuum columns of this phase's G, without their scales
            scaled = Gp[:, cont_cols] / model.scales[cont_cols]
        else:  # continuum columns were not built: efficiency and absorption here
            energies = model.energies
            factor = model.detector.efficiency(energies)
            if specimen_part and model.specimen.absorbs:
                factor = factor * absorption_factor(specimen_part, energies, model.specimen)
            scaled = continuum_basis(energies, model.beam_energy) * factor[:, None]
        char = char + scaled @ b
    return counts * char
