"""Abundance maps: where each phase is, as fractions in [0, 1] per pixel.

Conventions: a map is a 2-D float array of shape (rows, cols); pixel (i, j)
sits at row coordinate i and column coordinate j (pixel centres on integer
coordinates); lengths are in pixels. A stack of maps has the phase first:
(k, rows, cols).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _shape2(shape) -> tuple[int, int]:
    rows, cols = (int(n) for n in shape)
    if rows < 1 or cols < 1:
        raise ValueError(f"a map needs a positive shape, got {shape}")
    return rows, cols


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = shape
    return np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")


def _check_max(max_abundance: float) -> float:
    m = float(max_abundance)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"max_abundance must lie in [0, 1], got {max_abundance}")
    return m


def sphere_map(
    shape: tuple[int, int],
    center: tuple[float, float],
    radius: float,
    max_abundance: float = 1.0,
) -> np.ndarray:
    """Projected sphere: abundance ∝ the chord length through a ball.

    A ball of radius ``r`` seen in projection has, at distance ``d`` from its
    centre, a thickness (chord) 2·√(r² − d²); the map is that chord scaled so
    that its maximum (at the centre, d = 0) is ``max_abundance``:
    ``max_abundance · √(1 − d²/r²)`` for d < r, 0 outside.

    Parameters
    ----------
    shape : (int, int)
        Map shape (rows, cols), pixels.
    center : (float, float)
        Centre (row, col), pixels (may be fractional or outside the map).
    radius : float
        Sphere radius, pixels (> 0).
    max_abundance : float
        Abundance at the centre, in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (rows, cols)
        Abundances in [0, max_abundance].
    """
    shape = _shape2(shape)
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    m = _check_max(max_abundance)
    r, c = _grid(shape)
    d2 = (r - float(center[0])) ** 2 + (c - float(center[1])) ** 2
    return m * np.sqrt(np.clip(1.0 - d2 / float(radius) ** 2, 0.0, None))


def wedge_map(
    shape: tuple[int, int],
    angle: float = 0.0,
    low: float = 0.0,
    high: float = 1.0,
    start: float = 0.0,
    stop: float = 1.0,
) -> np.ndarray:
    """Linear gradient ("wedge"), e.g. a phase whose projected thickness ramps.

    The abundance rises linearly from ``low`` to ``high`` along the direction
    ``angle`` (degrees, counter-clockwise from the +column axis towards
    −row, i.e. 0° = left to right, 90° = bottom to top), between the
    fractions ``start`` and ``stop`` of the map's extent along that
    direction, and is constant (``low`` before, ``high`` after) outside.

    Parameters
    ----------
    shape : (int, int)
        Map shape (rows, cols), pixels.
    angle : float
        Direction of increase, degrees.
    low, high : float
        Abundances at the two ends, in [0, 1] (``low > high`` gives a
        decreasing ramp).
    start, stop : float
        Where the ramp begins and ends, as fractions (0–1) of the map's
        extent along ``angle``; ``start < stop``.

    Returns
    -------
    numpy.ndarray, shape (rows, cols)
        Abundances between ``low`` and ``high``.
    """
    shape = _shape2(shape)
    _check_max(low)
    _check_max(high)
    if not start < stop:
        raise ValueError(f"start must be smaller than stop, got {start}, {stop}")
    r, c = _grid(shape)
    th = np.radians(angle)
    proj = c * np.cos(th) - r * np.sin(th)
    lo, hi = proj.min(), proj.max()
    t = np.zeros_like(proj) if hi == lo else (proj - lo) / (hi - lo)
    t = np.clip((t - start) / (stop - start), 0.0, 1.0)
    return low + (high - low) * t


def gaussian_ripple_map(
    shape: tuple[int, int],
    width: float,
    wavelength: float,
    amplitude: float,
    *,
    angle: float = 0.0,
    offset: float | None = None,
    max_abundance: float = 1.0,
) -> np.ndarray:
    """A wavy Gaussian band (a "Gaussian ripple"), e.g. a layer or an interface.

    The band's centre line runs along the direction ``angle`` (degrees,
    0° = along the columns, left to right) and oscillates sideways as a sine
    of the given ``wavelength`` and ``amplitude``; across it the abundance is
    a Gaussian of standard deviation ``width``:
    ``max_abundance · exp(−(u − offset − amplitude·sin(2π v / wavelength))² / (2·width²))``,
    with v the coordinate along the band and u across it (pixels, measured
    from the map centre).

    Parameters
    ----------
    shape : (int, int)
        Map shape (rows, cols), pixels.
    width : float
        Standard deviation of the band's cross-section, pixels (> 0).
    wavelength : float
        Period of the ripple along the band, pixels (> 0).
    amplitude : float
        Sideways excursion of the centre line, pixels (0 = straight band).
    angle : float
        Direction of the band, degrees.
    offset : float, optional
        Sideways position of the centre line from the map centre, pixels
        (default 0: through the centre).
    max_abundance : float
        Peak abundance, in [0, 1].

    Returns
    -------
    numpy.ndarray, shape (rows, cols)
        Abundances in [0, max_abundance].
    """
    shape = _shape2(shape)
    if not width > 0 or not wavelength > 0:
        raise ValueError("width and wavelength must be positive")
    m = _check_max(max_abundance)
    r, c = _grid(shape)
    r = r - (shape[0] - 1) / 2.0
    c = c - (shape[1] - 1) / 2.0
    th = np.radians(angle)
    v = c * np.cos(th) - r * np.sin(th)  # along the band
    u = -c * np.sin(th) - r * np.cos(th)  # across it
    centre = (0.0 if offset is None else float(offset)) + amplitude * np.sin(
        2.0 * np.pi * v / wavelength
    )
    return m * np.exp(-((u - centre) ** 2) / (2.0 * width**2))


def image_map(
    image: ArrayLike, max_abundance: float = 1.0, *, normalise: str = "minmax"
) -> np.ndarray:
    """An abundance map from any 2-D image (a micrograph, a drawing).

    Parameters
    ----------
    image : array_like, shape (rows, cols)
        Grey levels (any units, finite). A HyperSpy 2-D signal can be passed
        as ``s.data``.
    max_abundance : float
        Abundance given to the brightest pixel, in [0, 1].
    normalise : {"minmax", "max"}
        "minmax": the darkest pixel becomes 0 and the brightest
        ``max_abundance``; "max": divide by the maximum (values must be
        ≥ 0), so that 0 stays 0.

    Returns
    -------
    numpy.ndarray, shape (rows, cols)
        Abundances in [0, max_abundance]; a constant image gives a constant
        map equal to ``max_abundance`` ("max") or 0 ("minmax").
    """
    img = np.asarray(image, dtype=float)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image has non-finite values")
    m = _check_max(max_abundance)
    if normalise == "minmax":
        lo, hi = img.min(), img.max()
        if hi == lo:
            return np.zeros_like(img)
        return m * (img - lo) / (hi - lo)
    if normalise == "max":
        if img.min() < 0:
            raise ValueError("normalise='max' needs a non-negative image")
        hi = img.max()
        if hi == 0:
            return np.zeros_like(img)
        return m * img / hi
    raise ValueError(f"normalise must be 'minmax' or 'max', not {normalise!r}")


def matrix_abundances(particle_maps: ArrayLike, *, matrix_first: bool = True) -> np.ndarray:
    """Add a matrix phase that fills what the particles leave: abundances sum to 1.

    The matrix takes ``1 − Σ particles`` in each pixel. Where the particle
    abundances sum to more than 1, they are scaled down in that pixel so that
    they sum to exactly 1 (and the matrix there is 0).

    Parameters
    ----------
    particle_maps : array_like, shape (m, rows, cols) or (rows, cols)
        Particle abundances in [0, 1].
    matrix_first : bool
        Put the matrix as phase 0 (the reference sample's convention) or last.

    Returns
    -------
    numpy.ndarray, shape (m + 1, rows, cols)
        Abundances in [0, 1] summing to 1 in every pixel.
    """
    p = np.asarray(particle_maps, dtype=float)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ValueError(f"particle maps must be (m, rows, cols), got shape {p.shape}")
    if p.min() < 0:
        raise ValueError("particle abundances must be non-negative")
    total = p.sum(axis=0)
    over = total > 1.0
    if over.any():
        p = p.copy()
        p[:, over] /= total[over]
        total = p.sum(axis=0)
    matrix = np.clip(1.0 - total, 0.0, 1.0)[None]
    return np.concatenate([matrix, p] if matrix_first else [p, matrix], axis=0)
