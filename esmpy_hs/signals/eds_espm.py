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

from exspy.signals import EDSTEMSpectrum, LazyEDSTEMSpectrum

from esmpy_hs.signals._metadata import DEFAULTED_FIELDS, INPUT_NODE

SIGNAL_TYPE = "EDS_ESMPY"


class EDSespm(EDSTEMSpectrum):
    """STEM-EDX spectrum image to be unmixed by physics-guided Poisson NMF.

    Create one with ``s.set_signal_type("EDS_ESMPY")`` on any 1-D signal (or
    an EDS_TEM signal); the metadata of exspy's EDS-TEM signals is used
    unchanged.
    """

    _signal_type = SIGNAL_TYPE

    def __init__(self, *args, **kwargs) -> None:
        # exspy moves an SEM map's Acquisition_instrument.SEM to .TEM: remember it was an SEM
        md = getattr(self, "metadata", None)  # set when set_signal_type re-initialises
        from_sem = md is not None and (
            md.has_item("Acquisition_instrument.SEM.Detector.EDS")
            and not md.has_item("Acquisition_instrument.TEM.Detector.EDS")
        )
        super().__init__(*args, **kwargs)
        if from_sem:
            self.metadata.set_item(f"{INPUT_NODE}.from_SEM", True)

    # -- exspy trap 1: the signal type is rewritten to "EDS_TEM" ------------
    def _set_default_param(self) -> None:
        super()._set_default_param()
        self.metadata.Signal.signal_type = SIGNAL_TYPE

    def set_microscope_parameters(self, *args, **kwargs):
        """exspy's :meth:`~exspy.signals.EDSTEMSpectrum.set_microscope_parameters`; the fields
        given count as checked by the user (no notice that they equal exspy's defaults)."""
        out = super().set_microscope_parameters(*args, **kwargs)
        given = [k for k, v in kwargs.items() if v is not None and k in DEFAULTED_FIELDS]
        if given:
            path = f"{INPUT_NODE}.confirmed"
            old = list(self.metadata.get_item(path, []))
            self.metadata.set_item(path, sorted(set(old) | set(given)))
        return out

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
        ``elevation_angle`` (degrees, or strings with units such as ``"35 deg"``), as exspy
        does for EDS_TEM signals, and checks them (elevation within 0–90°, a positive
        take-off angle).

        Returns
        -------
        float
            The take-off angle in degrees.
        """
        from esmpy_hs.signals._metadata import take_off_angle

        return take_off_angle(self.metadata)

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
