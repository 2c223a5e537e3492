"""From phase spectra and abundance maps to counts: the expected spectrum image and its
Poisson draw.

The noiseless model of a spectrum image is the linear mixture

    E[Y](i, j, c) = s · Σ_k maps[k, i, j] · spectra[k, c]

with one global factor ``s`` chosen so that the mean over pixels of the
expected total counts, ``mean_ij Σ_c E[Y](i, j, c)``, equals the requested
dose. Phase spectra thus carry the *relative* count rates (their shapes and
their relative sums); the dose sets the absolute level. The counts are then
drawn independently per pixel and channel from Poisson(E[Y]).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: Pixels processed at a time when drawing, to bound memory (an int64 buffer of
#: this many pixels × channels × 8 bytes).
_BLOCK_PIXELS = 2048


def _as_generator(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        raise TypeError(
            "random_state must be None, an int, a SeedSequence or a numpy Generator "
            "(np.random.default_rng(seed)), not a legacy RandomState"
        )
    return np.random.default_rng(random_state)


def _check_inputs(spectra: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    sp = np.asarray(spectra, dtype=float)
    mp = np.asarray(maps, dtype=float)
    if sp.ndim == 1:
        sp = sp[None]
    if sp.ndim != 2:
        raise ValueError(f"spectra must be (k, channels), got shape {sp.shape}")
    if mp.ndim == 2 and sp.shape[0] == 1:
        mp = mp[None]
    if mp.ndim != 3:
        raise ValueError(f"maps must be (k, rows, cols), got shape {mp.shape}")
    if mp.shape[0] != sp.shape[0]:
        raise ValueError(f"{sp.shape[0]} spectra but {mp.shape[0]} maps")
    if (sp < 0).any() or (mp < 0).any() or not (np.isfinite(sp).all() and np.isfinite(mp).all()):
        raise ValueError("spectra and maps must be finite and non-negative")
    return sp, mp


def dose_scale(spectra: ArrayLike, maps: ArrayLike, dose: float | None) -> float:
    """The factor ``s`` that brings the mixture to the requested dose.

    Parameters
    ----------
    spectra : array_like, shape (k, channels)
        Phase spectra (relative count rates per unit abundance).
    maps : array_like, shape (k, rows, cols)
        Abundances.
    dose : float or None
        Mean expected counts per pixel (counts/pixel). None: 1 (the spectra
        are already in counts per pixel per unit abundance).

    Returns
    -------
    float
        ``dose / mean_pixels(Σ_k maps_k · Σ_c spectra_k)``.
    """
    sp, mp = _check_inputs(spectra, maps)
    if dose is None:
        return 1.0
    dose = float(dose)
    if not dose > 0:
        raise ValueError(f"dose must be positive (counts per pixel), got {dose}")
    mean_total = float(np.tensordot(mp.mean(axis=(1, 2)), sp.sum(axis=1), axes=1))
    if not mean_total > 0:
        raise ValueError("the spectra and maps give no counts at all")
    return dose / mean_total


def expected_counts(spectra: ArrayLike, maps: ArrayLike, dose: float | None = None) -> np.ndarray:
    """The noiseless spectrum image (expected counts).

    Parameters
    ----------
    spectra : array_like, shape (k, channels)
        Phase spectra: relative count rates per unit abundance, per channel.
    maps : array_like, shape (k, rows, cols)
        Abundances (fractions).
    dose : float, optional
        Mean expected counts per pixel; None keeps the spectra's own scale
        (counts per pixel per unit abundance).

    Returns
    -------
    numpy.ndarray, shape (rows, cols, channels), float64
        Expected counts per pixel and channel.
    """
    sp, mp = _check_inputs(spectra, maps)
    s = dose_scale(sp, mp, dose)
    return np.tensordot(mp, sp * s, axes=(0, 0))


def _pick_dtype(max_lambda: float):
    # upper bound of a Poisson draw with overwhelming probability
    bound = max_lambda + 12.0 * np.sqrt(max_lambda) + 30.0
    if bound < np.iinfo(np.uint16).max:
        return np.uint16
    if bound < np.iinfo(np.int32).max:
        return np.int32
    return np.int64


def sample_counts(
    spectra: ArrayLike,
    maps: ArrayLike,
    dose: float | None = None,
    random_state: int | np.random.Generator | None = None,
    *,
    dtype=None,
) -> np.ndarray:
    """Draw a Poisson spectrum image from phase spectra and abundance maps.

    The counts are independent Poisson variables,
    ``Y[i, j, c] ~ Poisson(s · Σ_k maps[k, i, j] · spectra[k, c])``, with
    ``s`` from :func:`dose_scale` so that the mean expected counts per pixel
    is ``dose``. They are drawn photon by photon, which is exactly
    equivalent (Poisson splitting) and costs in proportion to the counts,
    not the channels: the number of photons that phase k sends from pixel
    (i, j) is Poisson(s · maps[k, i, j] · Σ_c spectra[k, c]), and each photon
    falls in channel c with probability spectra[k, c] / Σ_c spectra[k, c].
    (Blocks with more expected photons than entries draw one Poisson variable
    per entry instead.) The draw goes block by block of pixels (bounded
    memory) in a fixed order, so a given seed always gives the same image.

    Parameters
    ----------
    spectra : array_like, shape (k, channels)
        Phase spectra: relative count rates per unit abundance, per channel.
    maps : array_like, shape (k, rows, cols)
        Abundances (fractions).
    dose : float, optional
        Mean expected counts per pixel (counts/pixel); None keeps the
        spectra's own scale.
    random_state : int, numpy.random.Generator or None
        Seed or generator (``numpy.random.default_rng``); None draws fresh
        entropy (not reproducible).
    dtype : numpy dtype, optional
        Integer type of the result; default: ``uint16`` when no count can
        reach 65535, else ``int32`` (or ``int64``).

    Returns
    -------
    numpy.ndarray, shape (rows, cols, channels), integer counts
    """
    sp, mp = _check_inputs(spectra, maps)
    s = dose_scale(sp, mp, dose)
    rng = _as_generator(random_state)
    spec = sp * s
    k, rows, cols = mp.shape
    n_ch = spec.shape[1]
    flat = mp.reshape(k, -1).T  # pixels × k
    max_lambda = float((flat.max(axis=0) * spec.max(axis=1)).sum()) if flat.size else 0.0
    if dtype is None:
        dtype = _pick_dtype(max_lambda)
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"dtype must be an integer type, got {dtype}")
    limit = np.iinfo(dtype).max
    rate = spec.sum(axis=1)  # expected counts of a pure pixel of each phase
    cdf = np.cumsum(spec, axis=1)
    cdf = np.divide(cdf, cdf[:, -1:], out=np.ones_like(cdf), where=cdf[:, -1:] > 0)
    out = np.empty((rows * cols, n_ch), dtype=dtype)
    for start in range(0, rows * cols, _BLOCK_PIXELS):
        h = flat[start : start + _BLOCK_PIXELS]
        n_pix = h.shape[0]
        if float(h.sum(axis=0) @ rate) > n_pix * n_ch:
            # more photons than entries: one Poisson draw per entry is cheaper
            acc = rng.poisson(h @ spec).ravel()
            if acc.size and acc.max() > limit:
                raise OverflowError(f"a count exceeds the range of {dtype}; pass a wider dtype")
            out[start : start + n_pix] = acc.reshape(n_pix, n_ch)
            continue
        n = rng.poisson(h * rate)  # counts per pixel and phase
        index = []
        for j in range(k):
            total = int(n[:, j].sum())
            if total == 0:
                continue
            channel = np.searchsorted(cdf[j], rng.random(total), side="right")
            pixel = np.repeat(np.arange(n_pix) * n_ch, n[:, j])
            index.append(pixel + channel)
        acc = np.bincount(
            np.concatenate(index) if index else np.zeros(0, dtype=np.intp),
            minlength=n_pix * n_ch,
        )
        if acc.size and acc.max() > limit:
            raise OverflowError(f"a count exceeds the range of {dtype}; pass a wider dtype")
        out[start : start + n_pix] = acc.reshape(n_pix, n_ch)
    return out.reshape(rows, cols, n_ch)
