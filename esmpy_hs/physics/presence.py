"""Whether each LISTED element's lines are in a spectrum: a drop-one likelihood-ratio test.
HyperSpy-free.

The spectrum ``y`` (counts per channel; a map's summed spectrum, or the summed spectrum of the
pixels where one phase dominates) is fitted by Poisson maximum likelihood with

* the continuum columns of :func:`~esmpy_hs.physics.build_G` (amplitudes ≥ 0), the continuum
  times a cubic B-spline basis with knots every 1 keV (signed; on one phase's pure pixels also
  every 0.2 keV below 1 keV, ``fine_low``: the window's edges) and three exponential tails from
  the first channel (≥ 0) — the nuisance columns of :mod:`esmpy_hs.physics.identification`,
  which let a broad excess at the lowest energies (a detector more efficient there than the
  model's, the noise peak's tail) be read as continuum shape rather than as a light element's
  line;
* for each listed element (specimen and stray): ONE column with ALL its lines at their
  tabulated ratios (σ·ε, no absorption), plus one with its highest family alone (K, else L)
  so that absorption in the specimen may lower the low-energy families (as in the
  identification's final tied fit); amplitudes ≥ 0;
* for each family with ≥ 2000 counts under its peak, its first and second derivative along the
  energy axis (signed): a peak a few eV off or a little too wide is no evidence for another
  element.

Each listed specimen element is then dropped (its two columns and its derivatives) and the
spectrum refitted. The statistic is the identification's quasi-Poisson one,
``T = (D(without e) − D(all)) / φ_e``, with ``φ_e`` the deviance per degree of freedom of the
full fit away from the element's lines and in the ring around them (floored at 1), and the
threshold that of :func:`~esmpy_hs.physics.identification.detection_threshold` with a
Bonferroni bound over the listed specimen elements. An element with ``T`` at or below it is
*not detected*: the spectrum does not need its lines.

Whole line sets matter: with each element's lines in free groups (the identification's model),
another element's weak line takes an absent element's peak, or a present element's (Yb Mα
the counts of Al Kα; other elements' groups the counts of Mg Kα) and a present major would
read as not needed. Tied at the tabulated ratios, a line is only explained by an element whose
other lines agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from esmpy_hs.nmf._blas import one_blas_thread
from esmpy_hs.physics import identification as _ident
from esmpy_hs.physics._elements import symbol
from esmpy_hs.physics.detector import Detector
from esmpy_hs.physics.energy_axis import EnergyAxis
from esmpy_hs.physics.identification import (
    _RESOLVED,
    DEFAULT_ALPHA,
    _columns,
    _deviance_terms,
    _dispersion,
    _fit,
    _gram_nnls,
    _high_of,
    _neighbourhoods,
    _nuisance,
    candidate_elements,
    detection_threshold,
)

__all__ = ["listed_presence"]

#: a drop-one statistic from one least-squares step (an upper bound) between the threshold and
#: this many times it is refined by the full refit
_REFINE = 3.0


def listed_presence(
    spectrum: ArrayLike,
    axis: Any,
    beam_energy: float,
    elements: Sequence[str],
    *,
    stray_elements: Sequence[str] = (),
    detector: Detector | None = None,
    alpha: float = DEFAULT_ALPHA,
    others: ArrayLike | None = None,
    fine_low: bool = False,
) -> dict[str, Any]:
    """Drop-one likelihood-ratio test of each listed element's lines (module docstring).

    Parameters
    ----------
    spectrum
        Counts per channel (n,).
    axis
        Energy axis of ``spectrum`` (:class:`EnergyAxis` or ``(offset, scale, size)``, keV);
        the calibrated one when there is one.
    beam_energy
        E0 (keV).
    elements
        The listed specimen elements (each is tested).
    stray_elements
        Listed elements that are not part of the specimen: in the model, not tested.
    detector
        Width law and efficiency (default ``Detector()``).
    alpha
        Family-wise probability of calling an absent element's lines needed, Bonferroni over
        the tested elements.
    others
        (n, f) spectra that are a fixed part of the model (counts per channel, summed): for the
        pixels where one phase is (almost) pure, the other phases' fitted parts there, so that
        the counts of an element another phase holds are not read as this phase's. Fixed, not
        scaled: with a free scale, a phase sharing this one's major lines (Mg, O) was scaled
        up to take this phase's own Fe (reference sample, 18 counts/px).
    fine_low
        The continuum shape correction also with knots every
        :data:`~esmpy_hs.physics.identification.LOW_ENERGY_KNOT_KEV` below 1 keV: a broad
        low-energy excess (a detector more efficient there than the assumed window) is then
        not read as a listed light element. For one phase's (almost) pure pixels; not for a
        map's sum, where a light element of a minor phase is a small peak on that excess and
        the finer shape takes it too (espm's four-phase map: N of the particles, T 32 → 0).

    Returns
    -------
    dict
        ``statistic`` ({element: T}), ``counts`` ({element: counts its lines explain in the full
        fit}), ``not_detected`` (elements with T ≤ threshold, in the listed order),
        ``upper_bound`` (elements whose T is the one-step upper bound rather than the full
        refit's: T ≤ threshold, or T > ``_REFINE`` × threshold),
        ``threshold``, ``alpha``, ``dispersion`` (deviance per degree of freedom of the full
        fit), ``seconds``. Elements without a line on the axis are left out.
    """
    with one_blas_thread():
        return _presence(spectrum, axis, beam_energy, elements, stray_elements, detector, alpha,
                         others, fine_low)  # fmt: skip


#: the one-step bounds of all tested elements in one compiled call
#: (:func:`esmpy_hs.physics._irls.drop_one`); False: one NumPy/SciPy step per element
COMPILED_BOUNDS = True


#: a refit without one element takes the kept columns with ``np.compress`` (C order) and
#: their norms as NumPy computes them for ``A[:, keep]`` (the same matrix and norms); False:
#: ``A[:, keep]`` (Fortran order), its norms and its C-order copy formed for each refit
TAKEN_REFITS = True

#: the normal equations' blocks taken from the compiled bounds' packed matrix
#: (:meth:`esmpy_hs.physics.identification._BlockMatrix.from_packed`, the same blocks);
#: False: formed from ``A / norm`` again
PACKED_BLOCKS = True


def _presence(spectrum, axis, beam_energy, elements, stray_elements, detector, alpha,
              others, fine_low=False) -> dict:  # fmt: skip
    t0 = time.perf_counter()
    ax = EnergyAxis.from_any(axis)
    y = np.asarray(spectrum, dtype=np.float64).reshape(-1)
    if y.size != ax.size:
        raise ValueError(f"spectrum has {y.size} channels, the axis {ax.size}")
    det = Detector() if detector is None else detector
    listed = list(dict.fromkeys(symbol(e) for e in elements))
    stray = [e for e in dict.fromkeys(symbol(e) for e in stray_elements) if e not in listed]
    # the columns of the identification's candidates, listed elements first: the model check
    # tests the same spectrum's candidates next, on the same axis, and finds them built (each
    # element's columns differ from those of the listed elements alone by one scale factor,
    # which every fit here normalises away)
    pool = list(dict.fromkeys([*listed, *stray, *candidate_elements()]))
    cols = _columns(ax, float(beam_energy), pool, det)
    tested = [e for e in listed if e in cols.elements]
    present_cols = [e for e in [*listed, *stray] if e in cols.elements]
    shape, tail = _nuisance(ax, cols.continuum, y, fine_low=fine_low)
    blocks = [(cols.continuum, False, None), (shape, True, None), (tail, False, None)]
    index = {e: i for i, e in enumerate(cols.elements)}
    for e in present_cols:
        if _ident.FAST_PATH:  # (the same block, kept with the columns)
            own = cols.memo.get(("presence own", e))
            if own is None:
                tied = cols.tied[:, index[e]][:, None]
                high = _high_of(cols, e)
                own = tied if high is None else np.concatenate([tied, high[0][:, None]], axis=1)
                cols.memo[("presence own", e)] = own
        else:
            tied = cols.tied[:, index[e]][:, None]
            high = _high_of(cols, e)
            own = tied if high is None else np.concatenate([tied, high[0][:, None]], axis=1)
        blocks.append((own, False, e))
        if _ident.FAST_PATH:  # the element's nonzero family columns kept with the columns
            key = ("presence family", e)
            if key not in cols.memo:
                F = cols.family[e]
                F = F[:, F.sum(axis=0) > 0]
                cols.memo[key] = (F, F.sum(axis=0) >= 0.02 * F.sum())
            F, strong = cols.memo[key]
        else:
            F = cols.family[e]
            F = F[:, F.sum(axis=0) > 0]
            strong = F.sum(axis=0) >= 0.02 * F.sum()
        under = _ident._peak_regions(cols.memo, ("family", e), F) @ y
        D = _ident._kept_derivatives(cols.memo, ("family", e), F,
                                     strong & (under >= _RESOLVED), ax.scale)  # fmt: skip
        if D.shape[1]:
            blocks.append((D, True, e))
    A = np.concatenate([b[0] for b in blocks], axis=1)
    signed = np.concatenate([np.full(b[0].shape[1], b[1]) for b in blocks])
    owner = np.array([b[2] or "" for b in blocks for _ in range(b[0].shape[1])], dtype=object)
    own_line = np.concatenate([np.full(b[0].shape[1], b[2] is not None and not b[1])
                               for b in blocks])  # fmt: skip
    zero = np.zeros_like(y) if others is None else \
        np.asarray(others, dtype=np.float64).reshape(y.size, -1).sum(axis=1)  # fmt: skip
    a, mu = _fit(A, signed, y, zero)
    d_full = _deviance_terms(y, mu)
    dev_full = float(d_full.sum())
    p = A.shape[1]
    threshold = detection_threshold(len(tested), alpha)
    if "neighbourhoods" not in cols.memo:
        cols.memo["neighbourhoods"] = _neighbourhoods(cols, ax, det)
    near, ring = cols.memo["neighbourhoods"]
    sel = [index[e] for e in tested]
    if not sel:
        phi = []
    elif _ident.FAST_PATH:  # the same numbers from what is kept per candidate set
        phi = _ident._selection(cols, sel, ring).dispersion(d_full, p)
    else:
        phi = _dispersion(d_full, cols.tied[:, sel], near[:, sel], ring[:, sel], p)
    # each element dropped: first one weighted least-squares step from the full fit (its normal
    # equations, restricted to the kept columns: no pass over the channels per element); the
    # deviance there is at least the reduced model's minimum, so its T is an upper bound. A
    # bound at or below the threshold flags the element as surely as the exact T; a bound far
    # above it (> ``_REFINE`` × the threshold) is kept; in between, the full refit decides
    floor = 1e-3 * max(float(y.mean()), 1e-9)
    statistic, counts, approximate = {}, {}, []
    start, own_block = 0, {}
    for b in blocks:  # each element's own line columns: one block (as A's copy of it)
        if b[2] is not None and not b[1]:
            own_block[b[2]] = (start, np.ascontiguousarray(b[0]))
        start += b[0].shape[1]
    for e in tested:
        if _ident.FAST_PATH and e in own_block:
            j, own = own_block[e]
            counts[e] = float((own @ a[j: j + own.shape[1]]).sum())
        else:
            mine = (owner == e) & own_line
            counts[e] = float((A[:, mine] @ a[mine]).sum())
    bounds = {}
    if _ident.FAST_PATH and _ident.COMPILED and COMPILED_BOUNDS:
        # every element's bound in one compiled call, from the same normal equations (the
        # same amplitudes: the refits start where they did); only each bound's fitted
        # spectrum A x is summed in the compiled order (the bounds equal to rounding,
        # docs/validation.rst)
        from esmpy_hs.physics import _irls

        Ac = np.ascontiguousarray(A, dtype=np.float64)  # (A is: a concatenation)
        if A.flags.c_contiguous:
            norm = _irls.column_norms(Ac)  # (the same norms)
        else:  # pragma: no cover - another layout, summed as NumPy sums it
            norm = np.sqrt((A**2).sum(axis=0))
            norm[norm <= 0] = 1.0
        packed = _irls.pack_blocks(Ac, norm, _irls.BLOCK)
        if PACKED_BLOCKS and _irls.BLOCK == _ident._ROW_BLOCK:  # the same blocks, from those
            An = None  # (formed by _drop_step if a compiled bound fails)
            op = _ident._BlockMatrix.from_packed(*A.shape, *packed)
        else:
            An = A / norm
            op = _ident._BlockMatrix(An)
        M, rhs = op.normal(1.0 / np.sqrt(mu), (y - zero) / mu)
        run = [e for e in tested if counts[e] > 0]
        code = {e: k for k, e in enumerate(run)}
        owner_code = np.array([code.get(o, -1) for o in owner], dtype=np.int64)
        mus, xs, ok = _irls.drop_one(y.size, *packed, M, rhs, signed.astype(np.bool_),
                                     (a > 0) & ~signed, owner_code,
                                     np.arange(len(run), dtype=np.int64),
                                     np.ascontiguousarray(zero, dtype=np.float64),
                                     float(floor))  # fmt: skip
        bounds = {e: (mus[k], xs[k]) for k, e in enumerate(run) if ok[k]}
    else:
        norm = np.sqrt((A**2).sum(axis=0))
        norm[norm <= 0] = 1.0
        An = A / norm
        op = None
        if _ident.FAST_PATH:  # the same normal equations from the matrix's nonzero blocks
            op = _ident._BlockMatrix(An)
            M, rhs = op.normal(1.0 / np.sqrt(mu), (y - zero) / mu)
        else:
            Aw = An / mu[:, None]
            M, rhs = An.T @ Aw, (y - zero) @ Aw
    norm_f = None  # (NumPy's norms of A's columns in Fortran order, for the refits)
    for i, e in enumerate(tested):
        keep = owner != e
        if not counts[e] > 0:
            statistic[e] = 0.0
            continue
        try:
            if e in bounds:
                mu_e, x = bounds[e][0], bounds[e][1][keep]
                t_e = max(float(_deviance_terms(y, mu_e).sum()) - dev_full, 0.0) / float(phi[i])
                start = x / norm[keep]
            else:
                x, mu_e = _drop_step(A, norm, An, op, M, rhs, signed, a, keep, zero, floor)
                t_e = max(float(_deviance_terms(y, mu_e).sum()) - dev_full, 0.0) / float(phi[i])
                start = x / norm[keep]
        except np.linalg.LinAlgError:  # pragma: no cover - the ridge keeps it definite
            t_e, start = 2.0 * threshold, a[keep]  # no bound: the refit decides
        if threshold < t_e <= _REFINE * threshold:  # the bound cannot decide: refit
            if _ident.FAST_PATH and TAKEN_REFITS:
                # the kept columns taken in C order, with the norms NumPy gives them in
                # ``A[:, keep]`` (Fortran order: each column summed on its own, pairwise, as
                # in A in Fortran order): the same matrix and norms as below, without the
                # slow Fortran-order copy and its copy back
                if norm_f is None:
                    norm_f = np.sqrt((np.asfortranarray(A) ** 2).sum(axis=0))
                norm_e = norm_f[keep]
                norm_e[norm_e <= 0] = 1.0
                _, mu_e = _fit(np.compress(keep, A, axis=1), signed[keep], y, zero, start,
                               norm=norm_e)  # fmt: skip
            else:
                _, mu_e = _fit(A[:, keep], signed[keep], y, zero, start)
            t_e = max(float(_deviance_terms(y, mu_e).sum()) - dev_full, 0.0) / float(phi[i])
        else:
            approximate.append(e)
        statistic[e] = t_e
    return {
        "statistic": statistic,
        "counts": counts,
        "not_detected": [e for e in tested if statistic[e] <= threshold],
        "upper_bound": approximate,
        "threshold": float(threshold),
        "alpha": float(alpha),
        "dispersion": dev_full / max(y.size - p, 1),
        "seconds": time.perf_counter() - t0,
    }


def _drop_step(A, norm, An, op, M, rhs, signed, a, keep, zero, floor):
    """One element's one-step bound the NumPy/SciPy way (the compiled solve failed, or the
    compiled path is off): the amplitudes of the kept columns and the fitted spectrum."""
    if An is None:  # (the compiled path's normal equations; the matrix formed here)
        An = A / norm
    x = _gram_nnls(M[np.ix_(keep, keep)], rhs[keep], signed[keep],
                   passive=(a[keep] > 0) & ~signed[keep])  # the full fit's set
    if op is None:
        return x, np.maximum(zero + An[:, keep] @ x, floor)
    full = np.zeros(An.shape[1])
    full[keep] = x
    return x, np.maximum(zero + op.matvec(full), floor)
