"""The EDS_ESMPY signal classes: exspy's EDS-TEM spectrum plus physics-guided NMF.

``EDSespm`` subclasses exspy's :class:`~exspy.signals.EDSTEMSpectrum`, so every
exspy method (lines, intensities, models, Cliff–Lorimer quantification) keeps
working. exspy compares ``metadata.Signal.signal_type`` with the literal
strings ``"EDS_TEM"``/``"EDS_SEM"`` in three places; this module overrides each
of them so that a signal of type ``EDS_ESMPY`` behaves as an EDS-TEM signal:

1. ``_set_default_param`` (run by ``__init__``) resets the type to ``EDS_TEM``;
2. ``_get_line_energy(..., FWHM_MnKa="auto")`` raises for other types;
3. ``get_take_off_angle`` fails for other types.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from exspy.signals import EDSTEMSpectrum, LazyEDSTEMSpectrum
from exspy.utils.eds import take_off_angle as _take_off_angle

SIGNAL_TYPE = "EDS_ESMPY"


class EDSespm(EDSTEMSpectrum):
    """STEM-EDX spectrum image to be unmixed by physics-guided Poisson NMF.

    Create one with ``s.set_signal_type("EDS_ESMPY")`` on any 1-D signal (or
    an EDS_TEM signal); the metadata of exspy's EDS-TEM signals is used
    unchanged.
    """

    _signal_type = SIGNAL_TYPE

    # -- exspy trap 1: the signal type is rewritten to "EDS_TEM" ------------
    def _set_default_param(self) -> None:
        super()._set_default_param()
        self.metadata.Signal.signal_type = SIGNAL_TYPE

    # -- exspy trap 2: FWHM_MnKa="auto" only resolved for EDS_TEM/EDS_SEM ---
    def _get_line_energy(self, Xray_line, FWHM_MnKa=None):
        if isinstance(FWHM_MnKa, str) and FWHM_MnKa == "auto":
            FWHM_MnKa = self.metadata.get_item(
                "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa"
            )
        return super()._get_line_energy(Xray_line, FWHM_MnKa=FWHM_MnKa)

    # -- exspy trap 3: get_take_off_angle has no branch for our type --------
    def get_take_off_angle(self) -> float:
        """Take-off angle (degrees) from the TEM stage and detector metadata.

        Reads ``Acquisition_instrument.TEM.Stage.tilt_alpha``/``tilt_beta``
        and ``Acquisition_instrument.TEM.Detector.EDS.azimuth_angle``/
        ``elevation_angle`` (degrees), as exspy does for EDS_TEM signals.

        Returns
        -------
        float
            The take-off angle in degrees.
        """
        mp = self.metadata.Acquisition_instrument.TEM
        return _take_off_angle(
            mp.get_item("Stage.tilt_alpha", None),
            mp.get_item("Detector.EDS.azimuth_angle", None),
            mp.get_item("Detector.EDS.elevation_angle", None),
            mp.get_item("Stage.tilt_beta", 0.0),
        )

    # -- physics-guided NMF -------------------------------------------------
    def decomposition(self, *args, algorithm="SVD", output_dimension=None, **kwargs):
        """Decompose the map; ``algorithm="smart_nmf"`` runs the physics-guided Poisson NMF.

        Every other algorithm is passed unchanged to exspy/HyperSpy
        (:meth:`exspy.signals.EDSTEMSpectrum.decomposition`).

        Parameters
        ----------
        algorithm : str or object
            ``"smart_nmf"`` for :class:`esmpy_hs.nmf.SmartNMF` on the physics model of this
            signal; anything else goes to HyperSpy.
        output_dimension : int
            Number of phases k (required for smart_nmf).
        **kwargs
            For smart_nmf, the model options

            - ``elements``: list of symbols (default ``metadata.Sample.elements``);
            - ``stray_elements``: elements present only as stray signal (e.g. ``["Cu"]``
              from the grid): one column per line, not quantified;
            - ``split``: ``{element: energy_keV}`` models an element's line families
              above/below the energy as two columns (``None`` splits K from L);
            - ``continuum`` (default True): the two bremsstrahlung columns;
            - ``energy_range``: ``(low, high)`` keV fitted (default 0.25 keV to the axis end
              or the beam energy); factors are 0 outside;
            - ``detector``: efficiency preset name, ``{"energy", "efficiency"}`` curve or a
              :class:`esmpy_hs.physics.Detector` (default: metadata
              ``Acquisition_instrument.TEM.Detector.EDS.efficiency``, else the Si3N4 window);
            - ``phases``: names and priors, e.g. ``{"core": {"Fe": 0.16, "Pt": 0.84},
              "support": {"Fe": 0, "Pt": 0}}`` (atomic fractions; see
              :mod:`esmpy_hs.signals._priors`);
            - ``absorption_every`` (default 10): iterations between refreshes of each phase's
              absorption from its current composition (needs ``Sample.thickness``);
            - ``calibrate`` (default ``"auto"``): fit the detector on the map's summed spectrum
              before the decomposition — energy offset (eV) and gain of the axis and the peak
              width law FWHM² = c0 + c1·E + c2·E² (see :meth:`calibrate_detector`); ``False``
              uses the recorded axis and ``energy_resolution_MnKa`` as they are; a dict of known
              values (``{"offset_shift_eV": 10.0, "gain": 1.0, "resolution_mnka": 128.0}``;
              also ``"fwhm_linear": (a, b_keV)`` or ``"fwhm_quadratic": (c0, c1, c2)``) holds
              those and fits the rest; a result of :meth:`calibrate_detector` is used as it is.
              The axis and metadata of the signal are not changed; the values go to
              ``metadata.SmartNMF.calibration`` and into the stored model;
            - ``print_info`` (default True): notices, a progress bar and a summary;

            and any :class:`esmpy_hs.nmf.SmartNMF` parameter (``lambda_L``, ``mu``,
            ``epsilon_reg``, ``simplex``, ``max_iter``, ``tol``, ``init``, ``random_state``, …).

        Notes
        -----
        ``s.data`` and the user's metadata are not modified; the results go to
        ``s.learning_results`` (factors: channels × k, counts per pixel of pure phase;
        loadings: pixels × k) and to ``s.metadata.SmartNMF`` (what :meth:`quantify_phases`
        needs, kept by ``s.save``).
        """
        if isinstance(algorithm, str) and algorithm == "smart_nmf":
            if args:
                raise TypeError(
                    "smart_nmf takes keyword arguments only, e.g. "
                    "s.decomposition(algorithm='smart_nmf', output_dimension=3)"
                )
            from esmpy_hs.signals._decomposition import smart_nmf

            return_info = kwargs.pop("return_info", False)
            info = smart_nmf(self, output_dimension, **kwargs)
            return info["estimator"] if return_info else None
        return super().decomposition(
            *args, algorithm=algorithm, output_dimension=output_dimension, **kwargs
        )

    def calibrate_detector(self, *, plot: bool = True, filename: str | None = None,
                           calibrate: Any = "auto", **kwargs: Any):  # fmt: skip
        """Fit the energy calibration and the peak widths on the summed spectrum.

        The same step that ``decomposition(algorithm="smart_nmf")`` runs by default
        (``calibrate="auto"``), alone: the Poisson likelihood of the summed spectrum is
        maximised over the energy offset (eV) and gain of the axis and the width law
        FWHM(E)² = c0 + c1·E + c2·E² (eV², E in keV), with the amplitudes of each element's line
        families and the continuum as nuisance parameters (see
        :mod:`esmpy_hs.physics.calibration`). The signal is not changed.

        Parameters
        ----------
        plot : bool
            Draw the summed spectrum, the model and the normalised residual with the recorded
            and with the calibrated detector (stored as ``result.figure``).
        filename : str, optional
            Save the figure there.
        calibrate : "auto" or dict
            A dict holds known values fixed (see ``decomposition``).
        **kwargs
            ``elements``, ``stray_elements``, ``energy_range``, ``detector``,
            ``vacancy_transfer``, as for ``decomposition(algorithm="smart_nmf")``.

        Returns
        -------
        esmpy_hs.physics.calibration.Calibration
            ``offset_shift_eV`` (eV), ``gain``, ``fwhm_eV`` at C Kα, O Kα and Mn Kα (eV), their
            1σ ``uncertainty`` (Fisher information of the Poisson likelihood), ``applied``
            (False: the spectrum could not calibrate, ``message`` says why), ``warnings`` and
            ``summary()``.
        """
        import dataclasses

        from esmpy_hs.signals._calibration import calibrate_signal, plot_calibration

        if calibrate is False or calibrate is None:
            raise ValueError("calibrate_detector needs calibrate='auto' or a dict of known values")
        cal = calibrate_signal(self, calibrate, **kwargs)
        if cal is None:
            raise ValueError("calibrate_detector needs calibrate='auto' or a dict of known values")
        if plot or filename:
            ax = self.axes_manager.signal_axes[0]
            energies = np.asarray(ax.axis, dtype=np.float64)
            if str(ax.units).strip() == "eV":
                energies = energies / 1000.0
            fig = plot_calibration(cal, energies, str(self.metadata.General.title or ""))
            if filename:
                fig.savefig(filename, dpi=110)
            cal = dataclasses.replace(cal, figure=fig)
        return cal

    def quantify_phases(self, family: str | None = None):
        """Composition of each phase of the last smart_nmf decomposition.

        Parameters
        ----------
        family : {None, "high", "low", "combined"}
            For elements split in two columns: which one to quantify (default: the model's).

        Returns
        -------
        esmpy_hs.physics.Quantification
            ``.atomic_percent`` / ``.weight_percent`` (``{phase: {element: %}}``), their
            ``_error`` twins (1-σ counting errors), ``.to_csv()``; ``print()`` shows the table.
        """
        from esmpy_hs.signals._decomposition import quantify

        return quantify(self, family)

    def plot_phases(self, **kwargs):
        """One figure: each phase's abundance map, its spectrum (data, model and per-element
        contributions with line labels) and its composition.

        Keyword arguments go to :func:`esmpy_hs.plotting.plot_phases`; returns the
        matplotlib figure.
        """
        from esmpy_hs.plotting import plot_phases

        return plot_phases(self, **kwargs)


class LazyEDSespm(EDSespm, LazyEDSTEMSpectrum):
    """Lazy (dask-backed) twin of :class:`EDSespm`.

    ``decomposition(algorithm="smart_nmf", output_dimension=k, ...)`` fits the map chunk by
    chunk without computing it (:mod:`esmpy_hs.nmf._chunked`; the same iterates as the eager
    fit), with dask's local scheduler or the ``dask.distributed`` client that is open. Two extra
    keyword arguments:

    - ``persist``: ``"auto"`` (default), ``"memory"`` (compact chunks kept in memory, on the
      workers with a client) or ``"stream"`` (chunks re-read from disk at every iteration);
    - ``client``: a ``dask.distributed.Client``, None (use the default client if one is open)
      or False (never).

    ``learning_results.loadings`` and ``factors`` are computed NumPy arrays; the signal's data
    stay lazy. See the "Large maps" page of the documentation.
    """
