"""The model-misfit part of the stated uncertainty: what the residuals say the model misses.

The counting error of ``quantify_phases`` is the Fisher (model-based) error of each element's
counts: it assumes that the fitted model is the one that made the counts, so that the residuals
are Poisson noise. When the model is not (a detector width, efficiency, line ratio or continuum
that differs from the one that made the data), the residuals hold counts that the model places
wrongly, and the estimate of each element's counts is off by an amount the Fisher error knows
nothing of. The standard remedy is the robust ("sandwich", Huber–White) covariance of an
M-estimator: the variance of the estimating equations is read from the residuals themselves
instead of from the model,

    V = I⁻¹ M I⁻¹,   I = Gᵀ diag(1/μ) G,   M = Σ_b s_b s_bᵀ,   s_b = Σ_{c∈b} G_c (y_c − μ_c)/μ_c,

for a spectrum y with fitted mean μ = G a (columns G_c of channel c, amounts a). Under the model
E[M] = I and V is the Fisher covariance; this module states only the *excess*,

    V_misfit = I⁻¹ (M − E_model[M]) I⁻¹,

(E_model[M] the expectation of M under the fitted model, v_c its variance of y_c), which is zero
in expectation when the model is exact and grows with the counts the model misplaces; added in
quadrature to the other parts it would not count the counting error twice. E_model[M] includes
the fit's leverage: the fitted residuals r = (1 − P) ε (P the hat matrix of the linearised fit)
are smaller than the noise ε, and their scores sum to zero over the channels, so E[s_b s_bᵀ] =
K_b − I_b I⁻¹ K_b − K_b I⁻¹ I_b + I_b I⁻¹ K I⁻¹ I_b (I_b, K_b the sums over block b of G Gᵀ/μ
and G Gᵀ v/μ²). The :func:`dispersion` (Birge ratio) is the same comparison for the block sums
of the residuals.

The units ``b`` are blocks of consecutive channels one detector FWHM wide: under a misfit of the
peak shape (width, position, line ratios) the residuals of channels within one resolution
element are not independent (a peak too narrow leaves a positive core and negative wings), so a
per-channel sandwich would treat a systematic pattern as independent noise; one FWHM is the
scale below which the detector cannot tell counts apart (a heteroscedasticity-and-
autocorrelation-consistent estimate with the resolution as its bandwidth). The block width is
fixed by the detector, not fitted.

For a map, each phase's spectrum is the counts the fit attributes to it,
y_kc = Σ_p X_pc H_pk (G_k W_k)_c / X̂_pc (the fitted share of phase k in each pixel and channel),
with mean μ_kc = (G_k W_k)_c Σ_p H_pk and model variance v_kc = (G_k W_k)_c² Σ_p H_pk² / X̂_pc;
the sandwich is taken over the columns the phase uses (W_jk > 0, elements, stray lines and
continuum), and V_misfit is propagated to the atomic and weight fractions with the full
covariance (overlapping lines are anti-correlated). The excess is a first-order estimate: only
the part of the misfit the model could *not* absorb is visible in the residuals; the part it
absorbed into the amounts is read as being of the same size (the premise of every
residual-based error, e.g. the Birge ratio).

Status: measured, not part of ``quantify_phases``. ``benchmarks/validate_uncertainty.py`` scores
both statistics as candidates next to ``"total"``; on the maps measured, the misfit that biases
the compositions (a wrong sensitivity: a scale of a column) leaves no residual, and the misfit
that shows (a wrong shape) hardly biases them. The figures are in docs/validation.rst ("A term
from the model's misfit").
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

#: pixels per block when the attributed phase spectra are summed
_PIXEL_BLOCK = 4096


def fwhm_blocks(energies: NDArray[np.float64], fwhm: NDArray[np.float64]) -> NDArray[np.intp]:
    """Block index of each channel: consecutive channels, each block one FWHM wide.

    Parameters
    ----------
    energies
        (n,) channel centres (keV), increasing.
    fwhm
        (n,) detector FWHM at each channel (keV).

    Returns
    -------
    numpy.ndarray
        (n,) integer block label of each channel (0, 1, ...).
    """
    e = np.asarray(energies, dtype=np.float64)
    w = np.asarray(fwhm, dtype=np.float64)
    labels = np.empty(e.size, dtype=np.intp)
    block, start = 0, 0
    for c in range(e.size):
        if e[c] - e[start] >= w[start]:
            block, start = block + 1, c
        labels[c] = block
    return labels


_Array = NDArray[np.float64]


def attributed_sums(pixels: Iterable[tuple[NDArray, NDArray]], GW: _Array
                    ) -> tuple[_Array, _Array, _Array]:  # fmt: skip
    """Sums over pixels of what each phase's attributed spectrum needs.

    Parameters
    ----------
    pixels
        Blocks ``(X, H)``: counts (p, n) and abundances (p, k) of the same pixels.
    GW
        (k, n): each phase's fitted spectrum per unit abundance, (G_k W_k).

    Returns
    -------
    R1, R2, H_sums
        (k, n) Σ_p H_pk X_pc / X̂_pc, (k, n) Σ_p H_pk² / X̂_pc and (k,) Σ_p H_pk, with
        X̂ = H GW the fitted map (channels the model gives no counts are skipped).
    """
    GW = np.asarray(GW, dtype=np.float64)
    k, n = GW.shape
    R1, R2, Hs = np.zeros((k, n)), np.zeros((k, n)), np.zeros(k)
    for X, H in pixels:
        X = np.asarray(X, dtype=np.float64)
        H = np.clip(np.asarray(H, dtype=np.float64), 0.0, None)
        Xhat = H @ GW
        inv = np.divide(1.0, Xhat, out=np.zeros_like(Xhat), where=Xhat > 0)
        R1 += H.T @ (X * inv)
        R2 += (H * H).T @ inv
        Hs += H.sum(axis=0)
    return R1, R2, Hs


def _block_terms(G: _Array, a: _Array, y: _Array, v: _Array, blocks: NDArray[np.intp]):
    """What the sandwich and the dispersion need, over the active columns (see the module).

    Returns None when no column is active, else ``act`` (active columns), ``info`` (I),
    ``meat`` (M, from the residuals), ``expected`` (E[M] under the fitted model, with the
    leverage of the fit), ``rb`` (residual counts of each block) and ``rb2`` (E[rb²] under the
    fitted model, with the leverage).
    """
    G = np.asarray(G, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    mu = G @ a
    ok = mu > 0
    act = np.nonzero((a > 0) & (G[ok].sum(axis=0) > 0))[0]
    if act.size == 0 or not ok.any():
        return None
    Ga, mu_ok = G[ok][:, act], mu[ok]
    r = (np.asarray(y, dtype=np.float64) - mu)[ok]
    var = np.asarray(v, dtype=np.float64)[ok]
    g = Ga / mu_ok[:, None]  # score direction of each channel
    info = Ga.T @ g  # I = Gᵀ diag(1/μ) G
    inverse = np.unique(np.asarray(blocks)[ok], return_inverse=True)[1]
    nb, m = int(inverse.max()) + 1, act.size
    S = np.zeros((nb, m))
    np.add.at(S, inverse, g * r[:, None])
    # per block: I_b = Σ G Gᵀ/μ, K_b = Σ G Gᵀ v/μ², the block's column sums and v-weighted ones
    Ib, Kb = np.zeros((nb, m, m)), np.zeros((nb, m, m))
    np.add.at(Ib, inverse, Ga[:, :, None] * g[:, None, :])
    np.add.at(Kb, inverse, g[:, :, None] * (g * var[:, None])[:, None, :])
    colb, colvb = np.zeros((nb, m)), np.zeros((nb, m))
    np.add.at(colb, inverse, Ga)
    np.add.at(colvb, inverse, Ga * (var / mu_ok)[:, None])
    scale = np.sqrt(np.diag(info))
    inv = np.linalg.pinv(info / np.outer(scale, scale), rcond=1e-10, hermitian=True)
    inv = inv / np.outer(scale, scale)
    K = Kb.sum(axis=0)
    # residuals r = (1 − P) ε of the fit (P its hat matrix): E[s_b s_bᵀ] =
    # K_b − I_b I⁻¹ K_b − K_b I⁻¹ I_b + I_b I⁻¹ K I⁻¹ I_b
    IbI = Ib @ inv
    expected = (Kb - IbI @ Kb - np.transpose(IbI @ Kb, (0, 2, 1))
                + IbI @ K @ np.transpose(IbI, (0, 2, 1))).sum(axis=0)  # fmt: skip
    vb = np.bincount(inverse, weights=var, minlength=nb)
    u = colb @ inv  # (nb, m)
    rb2 = vb - 2 * np.einsum("bm,bm->b", u, colvb) + np.einsum("bm,mn,bn->b", u, K, u)
    rb = np.bincount(inverse, weights=r, minlength=nb)
    return {"act": act, "info_inv": inv, "meat": S.T @ S, "expected": expected,
            "rb": rb, "rb2": rb2}  # fmt: skip


def misfit_covariance(G: _Array, a: _Array, y: _Array, v: _Array,
                      blocks: NDArray[np.intp]) -> _Array:  # fmt: skip
    """Excess sandwich covariance of the amounts ``a`` of one spectrum (see the module).

    Parameters
    ----------
    G
        (n, m) columns (counts per unit amount).
    a
        (m,) fitted amounts (Poisson maximum likelihood); columns with a ≤ 0 are at their bound
        and get no variance.
    y
        (n,) the spectrum (counts).
    v
        (n,) its variance under the fitted model (counts²; ``G @ a`` for a Poisson spectrum).
    blocks
        (n,) block label of each channel (residuals are summed within a block).

    Returns
    -------
    numpy.ndarray
        (m, m) V_misfit = I⁻¹ (M − E[M]) I⁻¹ (amount units²), E[M] the expectation of M under
        the fitted model including the fit's leverage (the fitted residuals are smaller than
        the noise: their scores sum to zero); zero rows and columns for the columns at their
        bound. Its diagonal can be negative where the residuals are smaller than the noise.
    """
    m = np.asarray(G).shape[1]
    out = np.zeros((m, m))
    t = _block_terms(G, a, y, v, blocks)
    if t is None:
        return out
    inv, act = t["info_inv"], t["act"]
    out[np.ix_(act, act)] = inv @ (t["meat"] - t["expected"]) @ inv
    return out


def dispersion(G: _Array, a: _Array, y: _Array, v: _Array, blocks: NDArray[np.intp]) -> float:
    """Birge ratio of one spectrum at the detector's resolution: Σ_b (Σ_{c∈b} (y − μ))² over its
    expectation under the fitted model (with the fit's leverage), summed over the FWHM blocks
    (dimensionless; ≈ 1 when the model explains the counts; arguments as for
    :func:`misfit_covariance`)."""
    t = _block_terms(G, a, y, v, blocks)
    if t is None:
        return float("nan")
    den = float(np.sum(t["rb2"]))
    return float(np.sum(t["rb"] ** 2) / den) if den > 0 else float("nan")


def fraction_variance(rows: NDArray[np.float64], amounts: NDArray[np.float64],
                      V: NDArray[np.float64]) -> NDArray[np.float64]:  # fmt: skip
    """Variance of the fractions c = L a / Σ L a for a covariance V of the amounts a.

    Parameters
    ----------
    rows
        (e, m) L: each element's atoms (or mass) as a linear function of the amounts.
    amounts
        (m,) a.
    V
        (m, m) covariance of a.

    Returns
    -------
    numpy.ndarray
        (e,) var(c_e) to first order (clipped at 0; 0 where Σ L a = 0).
    """
    L = np.asarray(rows, dtype=np.float64)
    n = L @ np.clip(np.asarray(amounts, dtype=np.float64), 0.0, None)
    total = n.sum()
    if not total > 0:
        return np.zeros(L.shape[0])
    c = n / total
    D = (L - c[:, None] * L.sum(axis=0)[None, :]) / total  # ∂c_e/∂a_j
    return np.clip(np.einsum("ej,jk,ek->e", D, V, D), 0.0, None)


def _element_rows(model, G: NDArray[np.float64], family: str) -> NDArray[np.float64]:
    """(e, m) L of one phase: each specimen element's row of W (atoms) as a function of W, in
    the order of ``model.element_rows`` (the order of the quantification)."""
    rows = model.element_rows
    L = np.zeros((len(rows), G.shape[1]))
    colsum = G.sum(axis=0)
    for i, (el, j) in enumerate(rows.items()):
        pair = model._split_partner.get(el)
        if pair is None or family != "combined":
            L[i, j if pair is None else pair[family == "low"]] = 1.0
        else:  # counts-weighted mean of the two rows (PhysicsModel.composition)
            hi, lo = pair
            s = colsum[hi] + colsum[lo]
            if s > 0:
                L[i, hi], L[i, lo] = colsum[hi] / s, colsum[lo] / s
    return L


def _pixel_blocks(signal, H: NDArray[np.float64], channels: tuple[int, int]):
    c0, c1 = channels
    data = signal.data
    n_pix = H.shape[0]
    flat = data.reshape(n_pix, data.shape[-1])
    for start in range(0, n_pix, _PIXEL_BLOCK):
        X = flat[start:start + _PIXEL_BLOCK, c0:c1]
        if hasattr(X, "compute"):
            X = X.compute()
        yield np.asarray(X), H[start:start + _PIXEL_BLOCK]


def phase_residuals(signal) -> dict:
    """Each phase's attributed spectrum, its fitted mean and model variance (see the module).

    Parameters
    ----------
    signal
        A signal with a current smart_nmf fit (its counts and loadings are read).

    Returns
    -------
    dict
        ``y``, ``mu``, ``v``: (k, channels) counts, counts and counts² of each phase's
        attributed spectrum, its fitted mean and its variance under the fitted model; ``G``
        (k, channels, columns) each phase's G; ``amounts`` (columns, k) W × Σ_p H (counts per
        unit of G's columns); ``blocks`` (channels,) the FWHM block of each channel; ``model``.
    """
    from esmpy_hs.signals._decomposition import fit_arrays
    from esmpy_hs.signals._record import check_current

    rec = check_current(signal)
    fit = fit_arrays(signal)
    model, W, H = fit["model"], np.asarray(rec.W, dtype=np.float64), fit["H"]
    n_pix = int(np.prod(signal.data.shape[:-1])) if signal.data.ndim > 1 else 1
    if H.shape[0] != n_pix:
        raise ValueError(
            f"the loadings hold {H.shape[0]} pixels but the map has {n_pix}: fit it again"
        )
    G3 = rec.phase_G(model) if model.specimen.absorbs else np.repeat(model.G[None], rec.k, 0)
    GW = np.einsum("knm,mk->kn", G3, W)
    R1, R2, Hs = attributed_sums(_pixel_blocks(signal, H, rec.channels), GW)
    energies = model.energies
    return {
        "y": GW * R1,
        "mu": GW * Hs[:, None],
        "v": GW**2 * R2,
        "G": G3,
        "amounts": W * Hs[None, :],
        "blocks": fwhm_blocks(energies, model.detector.fwhm(energies)),
        "model": model,
    }


def misfit_errors(signal, family: str | None = None) -> tuple[_Array, _Array, _Array]:
    """The misfit part of the stated 1σ of each phase's composition (see the module).

    Parameters
    ----------
    signal
        A signal with a current smart_nmf fit (its counts and loadings are read).
    family
        Split elements' family (default: the model's).

    Returns
    -------
    atomic σ, weight σ, dispersion
        (elements × k) fractions (0–1), in the order of ``quantify_phases``' elements, 0 where
        the residuals show no more than Poisson noise; (k,) each phase's :func:`dispersion`.
    """
    from esmpy_hs.physics._elements import atomic_weight

    parts = phase_residuals(signal)
    model, G3, A, blocks = parts["model"], parts["G"], parts["amounts"], parts["blocks"]
    family = model.quant_family if family is None else family
    aw = np.array([atomic_weight(e) for e in model.element_rows])
    e, k = len(model.element_rows), A.shape[1]
    at, wt, phi = np.zeros((e, k)), np.zeros((e, k)), np.zeros(k)
    for j in range(k):
        y, v = parts["y"][j], parts["v"][j]
        V = misfit_covariance(G3[j], A[:, j], y, v, blocks)
        L = _element_rows(model, G3[j], family)
        at[:, j] = np.sqrt(fraction_variance(L, A[:, j], V))
        wt[:, j] = np.sqrt(fraction_variance(L * aw[:, None], A[:, j], V))
        phi[j] = dispersion(G3[j], A[:, j], y, v, blocks)
    return at, wt, phi
