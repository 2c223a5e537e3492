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
    def decomposition(
        self,
        *args,
        algorithm="SVD",
        output_dimension=None,
        elements=None,
        stray_elements=(),
        split=None,
        continuum=True,
        energy_range=None,
        detector=None,
        phases=None,
        absorption_every=10,
        vacancy_transfer=True,
        persist=None,
        client=None,
        calibrate="auto",
        return_info=False,
        print_info=True,
        **kwargs,
    ):
        """Decompose the map; ``algorithm="smart_nmf"`` runs the physics-guided Poisson NMF.

        Every other algorithm is passed unchanged to exspy/HyperSpy
        (:meth:`exspy.signals.EDSTEMSpectrum.decomposition`); the smart_nmf options below are
        then refused if set.

        Parameters
        ----------
        algorithm : str or object
            ``"smart_nmf"`` for :class:`esmpy_hs.nmf.SmartNMF` on the physics model of this
            signal; anything else goes to HyperSpy.
        output_dimension : int
            Number of phases k (required for smart_nmf).
        elements : list of str or "auto", optional
            Element symbols to model (default: ``metadata.Sample.elements``); ``"auto"`` runs
            :meth:`identify_elements` first and models the specimen elements it finds (its
            strays are added to ``stray_elements``).
        stray_elements : list of str, optional
            Elements present only as stray signal (e.g. ``["Cu"]`` from the grid): one column
            per line, not quantified.
        split : dict, optional
            ``{element: energy_keV}`` models an element's line families above/below the
            energy as two columns (``None`` as the energy splits K from L).
        continuum : bool, default True
            Model the bremsstrahlung with two columns.
        energy_range : (float, float), optional
            ``(low, high)`` in keV, the range fitted (default 0.25 keV to the axis end or the
            beam energy); the factors are 0 outside.
        detector : str, dict or esmpy_hs.physics.Detector, optional
            Efficiency preset name, ``{"energy": [keV...], "efficiency": [...]}`` curve or a
            :class:`esmpy_hs.physics.Detector` (default: metadata
            ``Acquisition_instrument.TEM.Detector.EDS.efficiency``, else the Si3N4 window).
        phases : dict, optional
            Names and priors, e.g. ``{"core": {"Fe": 0.16, "Pt": 0.84}, "support": {"Fe": 0,
            "Pt": 0}}`` (atomic fractions; see "Phase priors" in the API documentation).
        absorption_every : int, default 10
            Iterations between refreshes of each phase's absorption from its current
            composition (used when ``metadata.Sample.thickness`` is set).
        vacancy_transfer : bool, default True
            Include the Coster–Kronig and Auger vacancy transfer in the line cross sections.
        calibrate : "auto", False, dict or Calibration, default "auto"
            Fit the detector on the map's summed spectrum before the decomposition: energy
            offset (eV) and gain of the axis and the peak width law FWHM² = c0 + c1·E + c2·E²
            (see :meth:`calibrate_detector`). ``False`` uses the recorded axis and
            ``energy_resolution_MnKa`` as they are; a dict of known values
            (``{"offset_shift_eV": 10.0, "gain": 1.0, "resolution_mnka": 128.0}``; also
            ``"fwhm_linear": (a, b_keV)`` or ``"fwhm_quadratic": (c0, c1, c2)``) holds those and
            fits the rest; a result of :meth:`calibrate_detector` is used as it is. The axis and
            metadata of the signal are not changed; the values go to
            ``metadata.SmartNMF.calibration`` and into the stored model.
        persist : {"auto", "memory", "stream"}, optional
            Lazy signals only: where the compact chunks live between iterations (default
            ``"auto"``; see :func:`esmpy_hs.nmf.fit_chunked`).
        client : dask.distributed.Client or False, optional
            Lazy signals only: the cluster to fit on (default: the open client, if any;
            False: never a distributed client).
        return_info : bool, default False
            Return the fitted :class:`esmpy_hs.nmf.SmartNMF`.
        print_info : bool, default True
            Notices, a progress bar and a one-line summary.
        **kwargs
            For smart_nmf, any :class:`esmpy_hs.nmf.SmartNMF` parameter except ``G``,
            ``n_components`` and ``simplex_rows`` (which come from the model): ``lambda_L``,
            ``mu``, ``epsilon_reg``, ``simplex``, ``max_iter``, ``tol``, ``angle_tol``,
            ``abundance_tol``, ``init``, ``random_state``, ``spectra_from``,
            ``init_extrapolation``, ``sparsity_on``, ``callback``, … — an unknown name raises
            a ``TypeError`` listing them. For other algorithms: HyperSpy's keyword arguments.
            Without ``mu``, a map whose dominant phase is itself a mixture in the start's
            binned blocks (every phase present almost everywhere) gets μ from held-out counts
            first, the default 0.01 or 0 (:meth:`estimate_mu`; stored in
            ``metadata.SmartNMF_mu``); ``mu=0.01`` skips that check. Without ``smoothing``,
            such a map (an in-memory one whose spectra are fitted at full resolution, μ
            checked as above) is then fitted a second time with ``smoothing="model"`` (its
            own μ checked the same way), and the fit with the lower Poisson deviance of the
            counts is kept (both deviances in ``metadata.SmartNMF_smoothing``;
            docs/choosing.rst); ``smoothing="shares"`` skips the second fit.

        Returns
        -------
        esmpy_hs.nmf.SmartNMF or None
            The fitted estimator with ``return_info=True`` (smart_nmf); HyperSpy's return value
            otherwise.

        Notes
        -----
        ``s.data`` and the user's metadata are not modified; the results go to
        ``s.learning_results`` (factors: channels × k, counts per pixel of pure phase;
        loadings: pixels × k) and to ``s.metadata.SmartNMF`` (what :meth:`quantify_phases`
        needs, kept by ``s.save``; see "Results stored by smart_nmf" in the API documentation).
        """
        smart = {
            "elements": elements, "stray_elements": stray_elements, "split": split,
            "continuum": continuum, "energy_range": energy_range, "detector": detector,
            "phases": phases, "absorption_every": absorption_every,
            "vacancy_transfer": vacancy_transfer, "persist": persist, "client": client,
            "calibrate": calibrate,
        }  # fmt: skip
        if isinstance(algorithm, str) and algorithm == "smart_nmf":
            if args:
                raise TypeError(
                    "smart_nmf takes keyword arguments only, e.g. "
                    "s.decomposition(algorithm='smart_nmf', output_dimension=3)"
                )
            from esmpy_hs.signals._decomposition import smart_nmf
            from esmpy_hs.signals._prior_cv import auto_mu

            info = smart_nmf(self, output_dimension, print_info=print_info, mu_check=auto_mu,
                             **smart, **kwargs)  # fmt: skip
            return info["estimator"] if return_info else None
        defaults = EDSespm.decomposition.__kwdefaults__
        given = [name for name, value in smart.items() if value is not defaults[name]]
        if given:
            raise TypeError(
                f"{', '.join(given)} apply to algorithm='smart_nmf' only, not to "
                f"algorithm={algorithm!r}"
            )
        return super().decomposition(
            *args, algorithm=algorithm, output_dimension=output_dimension,
            return_info=return_info, print_info=print_info, **kwargs,
        )  # fmt: skip

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

    def quantify_phases(self, family: str | None = None, *, uncertainty: str = "counting",
                        n_splits: int = 2, random_state=0, budget=None):  # fmt: skip
        """Composition of each phase of the last smart_nmf decomposition.

        Parameters
        ----------
        family : {None, "high", "low", "combined"}
            For elements split in two columns: which one to quantify (default: the model's).
        uncertainty : {"counting", "splits", "systematic", "total"}
            What the 1-σ errors contain (all parts are added in quadrature):

            ``"counting"``: the Poisson errors of the counts given to each element.
            ``"splits"``: counting ⊕ the spread of refits over count splits (the same fit is
            repeated on the two halves of ``n_splits`` count splits, each count to one half
            with probability ½; 2 × ``n_splits`` refits; the spread is scaled to the full
            dose). Not for fits with phase priors.
            ``"systematic"``: counting ⊕ the stated accuracy of the physics model
            (:mod:`esmpy_hs.physics.systematics`: ionisation cross sections, fluorescence
            yields and line weights per element and line family, detector efficiency,
            absorption, the detector calibration's own 1σ), propagated to the compositions;
            no refits of the map, a fraction of a second.
            ``"total"``: counting ⊕ splits ⊕ systematic.

            The parts are kept in ``error_parts`` of the result (``{part: (atomic σ, weight
            σ)}``, fractions) and in ``metadata.SmartNMF_uncertainty``. What the errors cover,
            and their measured coverage, are in docs/choosing.rst and docs/validation.rst.
        n_splits, random_state : int
            Splits and their seed, for ``"splits"`` and ``"total"``.
        budget : esmpy_hs.physics.systematics.SystematicBudget, optional
            Relative 1σ accuracies for ``"systematic"`` and ``"total"`` (default: the budget
            cited in :mod:`esmpy_hs.physics.systematics`).

        Returns
        -------
        esmpy_hs.physics.Quantification
            ``.atomic_percent`` / ``.weight_percent`` (``{phase: {element: %}}``), their
            ``_error`` twins (1-σ, in %), ``.to_csv()``; ``print()`` shows the table and what the
            errors contain.
        """
        if uncertainty == "counting":
            if budget is not None:
                raise ValueError("budget is used with uncertainty='systematic' or 'total' only")
            from esmpy_hs.signals._decomposition import quantify

            return quantify(self, family)
        from esmpy_hs.signals._uncertainty import quantify_with_uncertainty

        return quantify_with_uncertainty(self, family, uncertainty=uncertainty,
                                         n_splits=n_splits, random_state=random_state,
                                         budget=budget)  # fmt: skip

    def estimate_n_phases(self, max_phases: int = 6, *, n_splits: int = 3,
                          plot: bool = False, **kwargs) -> int:  # fmt: skip
        """Suggest the number of phases k from held-out counts (count splitting).

        The counts are split in two independent halves of the same expected counts (each count
        goes to one half with probability ½); SmartNMF, on the same physics model as
        ``decomposition(algorithm="smart_nmf")``, is fitted to one half for k = 1 …
        ``max_phases`` and the other half's counts are scored under each fit (Poisson deviance
        per count). More phases than the map holds fit the first half's noise and score worse on
        the second. The suggestion is the smallest k whose mean score over the splits is within
        one standard error of the best, among the k that improve on every smaller k by at least
        5 % of the whole improvement (``rule="gain"``; ``rule="one_se"``: the standard error
        alone). See "The number of phases k" in docs/choosing.rst.

        Parameters
        ----------
        max_phases : int, default 6
            Largest k scored.
        n_splits : int, default 3
            Independent splits (the error bar; the cost grows linearly).
        plot : bool, default False
            Draw the curve with the suggestion marked.
        **kwargs
            ``bin`` (block size b: b × b pixels are summed before splitting; default: the
            largest b that keeps ≥ 4096 pixels), ``max_iter`` (iterations of each fit,
            default 60), ``random_state`` (seed of the splits, default 0), ``print_info``,
            ``rule``, ``warm_start`` (each k from the k − 1 fit plus one phase; default False),
            ``score`` (``"channels"``, or ``"windows"``: held-out counts summed over the lines'
            energy windows); the model options of :meth:`decomposition` (``elements``,
            ``detector``, ``calibrate``, ``energy_range``, …) and SmartNMF parameters
            (``lambda_L``, ``mu``, …).

        Returns
        -------
        int
            The suggested k. The curve (``ks``, ``deviance``, ``deviance_se``, every split's
            ``scores``, ``explained``: the share of the held-out improvement from k = 1 to the
            best reached at each k) and the suggestion ``k`` are stored in
            ``metadata.SmartNMF_n_phases``.
        """
        from esmpy_hs.signals._nphases import estimate_n_phases

        return estimate_n_phases(self, max_phases, n_splits=n_splits, plot=plot, **kwargs)

    def estimate_lambda(self, output_dimension: int, *, factors=(0.25, 0.5, 1.0, 2.0, 4.0),
                        n_splits: int = 2, **kwargs) -> float:  # fmt: skip
        """Choose the Laplacian weight λ of a k-phase fit from held-out counts.

        The counts are split in two independent halves; SmartNMF is fitted to one half with λ =
        f × the dose formula (``lambda_L=None``) for each factor f and the other half is scored
        (Poisson deviance per count). The formula (f = 1) is kept unless another factor scores
        better by more than one paired standard error. Use the result as
        ``decomposition(algorithm="smart_nmf", output_dimension=k, lambda_L=λ)``; see
        docs/choosing.rst and, for whether it beats the formula, docs/validation.rst.

        Parameters
        ----------
        output_dimension : int
            Number of phases k.
        factors : sequence of float > 0
            Multiples of the dose formula tried.
        n_splits : int, default 2
            Independent splits.
        **kwargs
            ``max_iter`` (of each fit, default 100), ``random_state``, ``print_info``; the model
            options of :meth:`decomposition` and SmartNMF parameters other than ``lambda_L``.

        Returns
        -------
        float
            λ for the full map (dimensionless, the weight of ``lambda_L``); the curve is stored
            in ``metadata.SmartNMF_lambda``.
        """
        from esmpy_hs.signals._prior_cv import estimate_lambda

        return estimate_lambda(self, output_dimension, factors=factors, n_splits=n_splits,
                               **kwargs)  # fmt: skip

    def estimate_mu(self, output_dimension: int, *, values=None, n_splits: int = 3,
                    **kwargs) -> float:  # fmt: skip
        """Is the sparsity prior right for this map? Choose its weight μ from held-out counts.

        The log-sparsity prior (``mu``, default 0.01) keeps a phase at zero where it is absent:
        right for precipitates in a matrix, wrong where every phase is present almost
        everywhere (smooth mixtures, a minor phase spread through the map), where it bends the
        phases towards the mixtures the map is made of. The counts are split in two independent
        halves; SmartNMF is fitted to one half with each candidate μ and the other half is
        scored (Poisson deviance per count). The default μ is kept unless another value scores
        better by more than one paired standard error. Use the result as
        ``decomposition(algorithm="smart_nmf", output_dimension=k, mu=μ)``; see
        docs/choosing.rst and, for what it chose on the validation maps, docs/validation.rst.

        Parameters
        ----------
        output_dimension : int
            Number of phases k.
        values : sequence of float ≥ 0, optional
            The μ tried; must hold the default μ. Default: the default μ and 0 (the prior off).
        n_splits : int, default 3
            Independent splits.
        **kwargs
            ``max_iter`` (of each fit, default 400), ``random_state``, ``print_info``; the
            model options of :meth:`decomposition` and SmartNMF parameters other than ``mu``.

        Returns
        -------
        float
            μ (dimensionless, the weight of ``mu``); the held-out deviances are stored in
            ``metadata.SmartNMF_mu``.
        """
        from esmpy_hs.signals._prior_cv import estimate_mu

        return estimate_mu(self, output_dimension, values=values, n_splits=n_splits, **kwargs)

    def get_element_maps(self, unit: str = "at.%", family: str | None = None) -> list:
        """Per-pixel composition implied by the last smart_nmf fit, one map per element.

        In pixel p the atoms of element e are ``a_ep = Σ_k W_ek H_kp`` (W's element rows, as
        :meth:`quantify_phases` reads them, times the abundances H) and its characteristic
        counts are ``N_ep = Σ_k S_ek W_ek H_kp`` (``S_ek``: counts per atom in phase k's G,
        with the same cross sections, detector efficiency and absorption as quantify_phases).
        The maps are the phase model's composition, not line windows: noise is pooled through
        the phases.

        Parameters
        ----------
        unit : {"at.%", "wt.%", "counts"}
            Atomic or weight percent (sum 100 over the quantified elements in every pixel with
            signal), or the element's characteristic counts per pixel.
        family : {None, "high", "low", "combined"}
            For elements split in two columns: which one to read (default: the model's).

        Returns
        -------
        list of hyperspy.signals.Signal2D
            One per quantified element (the order of :meth:`quantify_phases`), titled with its
            symbol, on this map's navigation axes (Signal1D for a line scan), lazy if this
            signal is lazy. ``metadata.Signal.Noise_properties.variance`` holds σ² (same unit,
            squared) with the 1-σ counting floor of the pixel: ``σ(a_e)/a_e = 1/√N_ep``
            propagated through the normalisation to percent (the formula of quantify_phases,
            applied to one pixel), ``σ = √N_ep`` for counts. It omits model errors and is
            usually larger than the map's actual error (the phases pool the pixels).
            ``metadata.ElementMap`` records the unit and family.

        See Also
        --------
        quantify_region, plot_element_maps, esmpy_hs.element_maps
        """
        from esmpy_hs.signals._maps import get_element_maps

        return get_element_maps(self, unit=unit, family=family)

    def quantify_region(self, region, family: str | None = None, name: str = "region"):
        """Composition of a region of the map from the fitted model summed over its pixels.

        Parameters
        ----------
        region : numpy.ndarray of bool, boolean signal or hyperspy.roi.BaseROI
            A navigation image (rows, columns) that is True in the region, or a rectangle,
            circle, polygon or point ROI on the navigation axes (calibrated units).
        family : {None, "high", "low", "combined"}
            For split elements (default: the model's).
        name : str
            Name of the table's column.

        Returns
        -------
        esmpy_hs.physics.Quantification
            The :meth:`quantify_phases` table format with one column: atoms
            ``Σ_k W_ek Σ_{p∈region} H_kp``, counts (the sum of the ``"counts"`` element maps
            over the region) and 1-σ counting errors ``σ(a_e)/a_e = 1/√N_e``.
        """
        from esmpy_hs.signals._maps import quantify_region

        return quantify_region(self, region, family=family, name=name)

    def plot_element_maps(self, unit: str = "at.%", **kwargs):
        """One figure of the element maps (:meth:`get_element_maps`).

        Keyword arguments go to :func:`esmpy_hs.plotting.plot_element_maps` (``reference``:
        maps to show below with the same colour scale per element, e.g. HyperSpy's
        line-window quantification; ``sigma``; ``filename``); returns the matplotlib figure.
        """
        from esmpy_hs.plotting import plot_element_maps

        return plot_element_maps(self.get_element_maps(unit=unit), **kwargs)

    def plot_phases(self, **kwargs):
        """One figure: each phase's abundance map, its spectrum (data, model and per-element
        contributions with line labels) and its composition.

        Keyword arguments go to :func:`esmpy_hs.plotting.plot_phases`; returns the
        matplotlib figure.
        """
        from esmpy_hs.plotting import plot_phases

        return plot_phases(self, **kwargs)

    def identify_elements(self, add: bool = False, *, candidates=None, alpha: float = 0.01,
                          energy_range=None, detector=None, calibrate="auto",
                          print_info: bool = False):  # fmt: skip
        """Find the elements whose lines the map's summed spectrum holds.

        Forward selection of whole line families (K, L and M lines of an element together)
        with a quasi-Poisson likelihood-ratio test per candidate and a Bonferroni threshold
        (:func:`esmpy_hs.physics.identification.identify`). Elements that are often stray
        signal (Cu/Mo/Au/Ni grids, Ga/Pt from FIB, C contamination, Si internal fluorescence)
        are named as such in the ``source`` column.

        Parameters
        ----------
        add : bool, default False
            Add the specimen elements found to ``metadata.Sample.elements`` (strays are not
            added; they are printed with how to model them). Otherwise the metadata is not
            changed.
        candidates : list of str, optional
            Elements to test (default: C to U).
        alpha : float, default 0.01
            Probability of one or more false detections per selection step.
        energy_range, detector, calibrate
            As for ``decomposition(algorithm="smart_nmf")``; the calibration is used when the
            map already has an element list, the recorded axis and detector otherwise.
        print_info : bool, default False
            Print the table.

        Returns
        -------
        esmpy_hs.physics.identification.Identification
            ``.elements``, ``.specimen_elements``, ``.stray_elements``; ``.evidence`` (counts
            explained, share of the peak region's counts, test statistic, lines used, likely
            source); its repr is the table.
        """
        from esmpy_hs.signals._identify import identify_elements

        return identify_elements(self, add=add, candidates=candidates, alpha=alpha,
                                 energy_range=energy_range, detector=detector,
                                 calibrate=calibrate, print_info=print_info)  # fmt: skip

    def plot_residuals(self, title: str = ""):
        """The model check of the last smart_nmf fit: summed data and model, the residual,
        and the elements whose lines the model leaves unexplained (red: in the
        :class:`esmpy_hs.UnexplainedCountsWarning`; green: strays and weak lines).

        Returns the matplotlib figure.
        """
        from esmpy_hs.signals._model_check import plot_residuals
        from esmpy_hs.signals._record import check_current

        check = check_current(self).model_check
        if check is None:
            raise ValueError("this smart_nmf fit has no model check (fitted before it existed, "
                             "or the check failed): fit again")
        return plot_residuals(check, title)


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
