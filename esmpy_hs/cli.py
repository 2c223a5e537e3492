"""The ``esmpy-hs`` command: ``esmpy-hs demo`` and ``esmpy-hs decompose FILE -k 3``.

Run ``esmpy-hs --help`` or ``esmpy-hs decompose --help`` for the options. Errors end the program
with one line on stderr (``esmpy-hs: error: ...``) and exit status 1 (2 for invalid options, as
argparse does); ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from esmpy_hs._version import __version__

PROG = "esmpy-hs"

__all__ = ["CLIError", "build_parser", "decompose", "main"]


class CLIError(Exception):
    """Bad input, reported on one line and exit status 1."""


# ---------------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _k_or_auto(text: str) -> int | str:
    """``-k``: a positive integer or ``auto`` (:meth:`EDSespm.estimate_n_phases`)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None


def _mu_or_auto(text: str) -> float | str:
    """``--mu``: a number ≥ 0 or ``auto`` (:meth:`EDSespm.estimate_mu`)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0 or 'auto', got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or ROWSxCOLS, got {text!r}") from None
    if len(dims) == 1:
        dims = (dims[0], dims[0])
    if len(dims) != 2 or min(dims) < 4:
        raise argparse.ArgumentTypeError(f"expected N or ROWSxCOLS with N ≥ 4, got {text!r}")
    return dims  # type: ignore[return-value]


def _elements(values: Sequence[str]) -> list[str]:
    """``["Fe", "O"]``, ``["Fe,O"]`` or ``["Fe O"]`` → ``["Fe", "O"]``."""
    out: list[str] = []
    for value in values:
        out.extend(v for v in value.replace(",", " ").split() if v)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``esmpy-hs`` command (used by the docs too)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Unmix STEM-EDX spectrum images into phases and their compositions with a "
            "physics-guided Poisson NMF (Y ≈ G·W·H)."
        ),
        epilog=f"Run '{PROG} COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulate the reference sample, fit it and compare with the truth",
        description=(
            "Simulate the validation study's three-phase sample (bridgmanite matrix, "
            "ferropericlase and Ca-perovskite particles; 128 × 128 pixels, 293 counts per "
            "pixel), fit it with smart_nmf, print the composition table next to the truth, and "
            "write esmpy_demo.png (maps, spectra with the per-element model, compositions) and "
            "esmpy_demo.hspy (the fitted signal) into the output folder."
        ),
    )
    demo.add_argument(
        "-d",
        "--output-dir",
        default=".",
        metavar="DIR",
        help="folder for esmpy_demo.png and esmpy_demo.hspy (default: current)",
    )
    demo.add_argument(
        "--size",
        type=_size,
        default=(128, 128),
        metavar="N|ROWSxCOLS",
        help="map size in pixels (default: 128x128, the reference sample)",
    )
    demo.add_argument(
        "--dose",
        type=_positive_float,
        default=293.0,
        metavar="COUNTS",
        help="mean counts per pixel (default: 293; the low-dose case is 18)",
    )
    demo.add_argument(
        "--max-iter",
        type=_positive_int,
        default=None,
        metavar="N",
        help="iteration cap of the fit (default: 1000)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the Poisson noise (default: 0)")
    demo.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no fit notices"
    )
    demo.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    demo.set_defaults(func=_run_demo)

    dec = sub.add_parser(
        "decompose",
        help="fit a spectrum image file and write the results, a figure and the table",
        description=(
            "Load FILE (any format HyperSpy reads), treat it as an EDS_ESMPY signal, apply the "
            "overrides below to a copy (FILE is never modified), fit k phases with "
            "smart_nmf and write OUT.hspy (the fitted signal), OUT.png (maps, spectra, "
            "compositions), OUT.txt (the composition table), OUT.csv (the same table, one "
            "row per phase and element) and the element maps in at.% (OUT_elements.hspy, "
            "OUT_elements.png)."
        ),
    )
    dec.add_argument("file", metavar="FILE", help="spectrum image, e.g. map.hspy, map.bcf, map.emd")
    dec.add_argument(
        "-k",
        "--phases",
        dest="k",
        type=_k_or_auto,
        required=True,
        metavar="K",
        help="number of phases to find (required), or 'auto' to estimate it from held-out "
        "counts (s.estimate_n_phases, up to --max-phases)",
    )
    dec.add_argument(
        "--max-phases",
        type=_positive_int,
        default=None,
        metavar="N",
        help="largest number of phases that -k auto tries (default: 6)",
    )
    dec.add_argument(
        "-e",
        "--elements",
        nargs="+",
        metavar="EL",
        help="elements of the specimen, e.g. '--elements Fe Mg O Si' "
        "or 'Fe,Mg,O,Si' (default: the file's metadata.Sample.elements)",
    )
    dec.add_argument(
        "--stray-elements",
        nargs="+",
        metavar="EL",
        help="elements present only as stray signal (e.g. Cu from the grid): "
        "modelled line by line, not quantified",
    )
    dec.add_argument(
        "-t",
        "--thickness",
        metavar="QUANTITY",
        help="specimen thickness for the absorption correction, e.g. '80 nm' "
        "(a bare number is nm); needs a density",
    )
    dec.add_argument(
        "--density",
        metavar="QUANTITY",
        help="specimen density, e.g. '4.5 g/cm^3' (a bare number is g/cm³)",
    )
    dec.add_argument(
        "--beam-energy",
        type=_positive_float,
        metavar="KEV",
        help="beam energy in keV, if the file lacks it or it is wrong",
    )
    dec.add_argument(
        "--window",
        choices=("windowless", "Si3N4", "polymer", "Be"),
        help="the detector's window, if the file does not say (default: Si3N4 40 nm + Al 30 nm "
        "assumed, and the stated uncertainty spans windowless to polymer)",
    )
    dec.add_argument(
        "--energy-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="energy window to fit, keV (default: 0.25 keV to the axis end)",
    )
    dec.add_argument(
        "--max-iter", type=_positive_int, metavar="N", help="iteration cap (default: the solver's)"
    )
    dec.add_argument(
        "--mu",
        type=_mu_or_auto,
        metavar="MU",
        help="weight of the sparsity prior (0 switches it off), or 'auto' to choose between "
        "0.01 and 0 from held-out counts (s.estimate_mu). Default: 0.01, chosen that way "
        "instead when the map looks mixed (every phase present almost everywhere)",
    )
    dec.add_argument(
        "--smoothing",
        choices=("shares", "model"),
        default=None,
        help="what the smoothing prior compares between neighbouring pixels: the abundance "
        "'shares' or the 'model' counts, which does not push the spectra outwards on maps "
        "without a pure matrix (in-memory fits only). Default: 'shares'; where the map looks "
        "mixed both are fitted and the fit with the lower Poisson deviance kept "
        "(see docs/choosing.rst)",
    )
    dec.add_argument(
        "--init",
        choices=("auto", "random"),
        default="auto",
        help="start of the fit: 'auto' (default; deterministic, physics-aware) or 'random'",
    )
    dec.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random start (--init random); the default start uses no random numbers",
    )
    dec.add_argument(
        "--lazy",
        action="store_true",
        help="load the file lazily (dask) and fit it chunk by chunk, for maps larger than "
        "memory (the chunks are kept in memory in compact form when they fit, else re-read)",
    )
    dec.add_argument(
        "-o",
        "--output",
        metavar="OUT.hspy",
        help="results file; OUT.png, OUT.txt and OUT.csv go beside it "
        "(default: FILE's name + '_esmpy.hspy' in the current folder)",
    )
    dec.add_argument(
        "--uncertainty",
        choices=("counting", "systematic", "splits", "total"),
        default="systematic",
        help="what the ± of the table contains: 'systematic' (default: counting ⊕ the stated "
        "accuracy of the physics model), 'counting', 'splits' (counting ⊕ the spread of 4 "
        "refits over count splits) or 'total' (all three); see s.quantify_phases",
    )
    dec.add_argument("--log", action="store_true", help="logarithmic intensity axis in the figure")
    dec.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no fit notices"
    )
    dec.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    dec.set_defaults(func=_run_decompose)
    return parser


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _quiet_imports() -> None:
    # exspy 0.3.2 imports deprecated HyperSpy paths; nothing a user can act on
    warnings.filterwarnings("ignore", message="Importing `Lazy")
    # old .hspy files: HyperSpy converts them on load and says so; nothing to act on either
    warnings.filterwarnings("ignore", message="Loading old file version")


@contextlib.contextmanager
def _hyperspy_logs_muted():
    """HyperSpy logs multi-line ERRORs for unreadable files; the CLI reports them in one line."""
    logger = logging.getLogger("hyperspy")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _outputs(output: str | None, file: Path) -> dict[str, Path]:
    if output is None:
        base = Path.cwd() / f"{file.stem}_esmpy"
    else:
        out = Path(output)
        base = out.with_suffix("") if out.suffix.lower() == ".hspy" else out
    out = {ext: base.parent / f"{base.name}.{ext}" for ext in ("hspy", "png", "txt", "csv")}
    for ext in ("hspy", "png"):
        out[f"elements.{ext}"] = base.parent / f"{base.name}_elements.{ext}"
    return out


def _load(path: Path, lazy: bool):
    import hyperspy.api as hs

    if not path.exists():
        raise CLIError(f"{path}: no such file")
    if path.is_dir():
        raise CLIError(f"{path}: is a folder, not a file")
    try:
        with _hyperspy_logs_muted():
            loaded = hs.load(str(path), lazy=lazy)
    except Exception as exc:  # rsciio raises many types for unreadable files
        raise CLIError(f"cannot read {path}: {_one_line(exc)}") from exc
    signals = loaded if isinstance(loaded, list) else [loaded]
    spectra = [s for s in signals if s.axes_manager.signal_dimension == 1]
    eds = [s for s in spectra if "EDS" in str(s.metadata.Signal.get_item("signal_type", ""))]
    candidates = eds or spectra
    if not candidates:
        dims = ", ".join(f"{s.axes_manager.signal_dimension}-D" for s in signals)
        raise CLIError(
            f"{path} holds no spectrum (signals with {dims} signal axes); "
            "an EDX spectrum image has one signal axis, the energy"
        )
    images = [s for s in candidates if s.axes_manager.navigation_dimension > 0]
    if len(candidates) > 1 and len(images) == 1:
        # e.g. Velox: the spectrum image and one sum spectrum per detector
        return images[0]
    if len(candidates) > 1:
        raise CLIError(
            f"{path} holds {len(candidates)} spectra; save the one to fit in its own file"
        )
    return candidates[0]


def _prepare(signal, args):
    """An EDS_ESMPY copy of ``signal`` with the command-line overrides applied."""
    from esmpy_hs.signals.eds_espm import SIGNAL_TYPE, EDSespm

    s = signal  # loaded from FILE: changing it never touches the file
    s.set_signal_type(SIGNAL_TYPE)
    if not isinstance(s, EDSespm):
        raise CLIError(f"cannot make an {SIGNAL_TYPE} signal from this file")
    from esmpy_hs.signals._metadata import read_energy_axis

    try:
        read_energy_axis(s)
    except ValueError as exc:
        raise CLIError(f"the signal axis is not an energy in eV or keV: {_one_line(exc)}") from exc
    if args.elements:
        try:
            s.set_elements(_elements(args.elements))
        except Exception as exc:
            raise CLIError(f"--elements: {_one_line(exc)}") from exc
    if args.beam_energy is not None:
        s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", float(args.beam_energy))
    if getattr(args, "window", None) is not None:
        from esmpy_hs.signals._metadata import EDS

        s.metadata.set_item(f"{EDS}.efficiency", args.window)
    if args.thickness is not None:
        s.metadata.set_item("Sample.thickness", args.thickness)
    if args.density is not None:
        s.metadata.set_item("Sample.density", args.density)
    return s


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command: one line on stderr, no source line."""
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _check_writable(outputs: dict[str, Path]) -> None:
    """Fail before fitting if an output cannot be written (folder missing rights, a file in the
    way), so that a long fit is never lost on a bad ``-o``."""
    import tempfile

    for folder in sorted({p.parent for p in outputs.values()}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise CLIError(
                f"cannot write the results to {folder}: {exc.strerror or _one_line(exc)}; "
                "choose a writable place with -o/--output"
            ) from exc
    for p in outputs.values():
        if p.is_dir():
            raise CLIError(f"cannot write {p}: a folder has that name; choose another -o")
        if p.exists() and not os.access(p, os.W_OK):
            raise CLIError(f"cannot overwrite {p}: the file is read-only; choose another -o")


def _check_counts(s) -> None:
    import numpy as np

    if s.data.size == 0:
        raise CLIError("nothing to fit: the signal is empty")
    total = s.data.sum()
    if hasattr(total, "compute"):
        total = total.compute()
    total = float(total)
    if not np.isfinite(total):
        raise CLIError("nothing to fit: the data contain NaN or infinite values")
    if total <= 0:
        raise CLIError("nothing to fit: the map has no counts")


def _table_text(s, q, source: Path, k: int) -> str:
    from esmpy_hs.signals._record import require_record

    record = require_record(s)
    header = [
        f"# esmpy-hs {__version__}: smart_nmf, {k} phases, {source}",
        f"# elements: {', '.join(q.elements)}",
        f"# {record.n_iter} iterations ({record.stop_reason})",
        "",
    ]
    return "\n".join(header) + str(q).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def decompose(
    file: str | Path,
    k: int | str,
    *,
    output: str | Path | None = None,
    elements: Sequence[str] | None = None,
    stray_elements: Sequence[str] | None = None,
    thickness: str | None = None,
    density: str | None = None,
    beam_energy: float | None = None,
    window: str | None = None,
    energy_range: tuple[float, float] | None = None,
    max_iter: int | None = None,
    seed: int | None = None,
    init: str = "auto",
    mu: float | str | None = None,
    lazy: bool = False,
    log: bool = False,
    quiet: bool = False,
    uncertainty: str = "systematic",
) -> dict[str, Path]:
    """What ``esmpy-hs decompose`` does, callable from Python.

    Parameters mirror the command-line options (see ``esmpy-hs decompose --help``).

    Returns
    -------
    dict
        ``{"hspy": ..., "png": ..., "txt": ..., "csv": ..., "elements.hspy": ...,
        "elements.png": ...}``: the paths written (no element maps for a single spectrum; no
        element figure for a line scan).

    Raises
    ------
    CLIError
        On bad input, with a one-line message.
    """
    args = argparse.Namespace(
        file=str(file),
        k=k,
        output=None if output is None else str(output),
        elements=elements,
        stray_elements=stray_elements,
        thickness=thickness,
        density=density,
        beam_energy=beam_energy,
        window=window,
        energy_range=energy_range,
        max_iter=max_iter,
        seed=seed,
        init=init,
        mu=mu,
        lazy=lazy,
        log=log,
        quiet=quiet,
        uncertainty=uncertainty,
    )
    return _decompose(args)


def _decompose(args) -> dict[str, Path]:
    import matplotlib.pyplot as plt

    from esmpy_hs.signals._metadata import ImplausibleInputWarning, MissingMetadataError

    path = Path(args.file)
    outputs = _outputs(args.output, path)
    if path.exists() and any(p.resolve() == path.resolve() for p in outputs.values()):
        raise CLIError(f"the output would overwrite the input file {path}; choose another -o")
    if not path.exists():
        raise CLIError(f"{path}: no such file")
    _check_writable(outputs)  # before loading and fitting: a bad -o never costs a fit
    smoothing = getattr(args, "smoothing", None)
    if smoothing == "model" and args.lazy:
        raise CLIError("--smoothing model is built for in-memory fits: drop --lazy, or keep "
                       "--smoothing shares for a chunked fit")  # fmt: skip
    s = _prepare(_load(path, args.lazy), args)
    _check_counts(s)

    kwargs: dict = {"print_info": not args.quiet}
    if args.stray_elements:
        kwargs["stray_elements"] = _elements(args.stray_elements)
    if args.energy_range is not None:
        kwargs["energy_range"] = tuple(args.energy_range)
    if args.max_iter is not None:
        kwargs["max_iter"] = args.max_iter
    if smoothing is not None:  # given: no choice between the two on a mixed map
        kwargs["smoothing"] = smoothing
    init = getattr(args, "init", "auto") or "auto"
    if init != "auto":
        kwargs["init"] = init
    if args.seed is not None:
        if init == "auto":
            print(
                f"{PROG}: note: --seed has no effect with the default start (--init auto uses no "
                "random numbers); add --init random for a seeded random start",
                file=sys.stderr,
            )
        kwargs["random_state"] = args.seed
    max_phases = getattr(args, "max_phases", None)
    if max_phases is not None and args.k != "auto":
        print(f"{PROG}: note: --max-phases has no effect with -k {args.k} (it caps -k auto)",
              file=sys.stderr)  # fmt: skip
    try:
        with warnings.catch_warnings():
            # implausible inputs (a thick specimen, scaled data): one line each, and go on
            warnings.simplefilter("always", ImplausibleInputWarning)
            warnings.showwarning = _warning_line
            # the held-out choices: the fit's options but its iteration cap
            est_kw = {key: v for key, v in kwargs.items() if key != "max_iter"}
            if args.k == "auto":
                cap = {} if max_phases is None else {"max_phases": max_phases}
                args.k = s.estimate_n_phases(**cap, **est_kw)
                if not args.quiet:
                    print(f"-k auto: {args.k} phases")
            mu = getattr(args, "mu", None)
            if mu == "auto":
                mu = s.estimate_mu(args.k, **est_kw)
            if mu is not None:
                kwargs["mu"] = mu
            s.decomposition(algorithm="smart_nmf", output_dimension=args.k, **kwargs)
    except MissingMetadataError as exc:
        raise CLIError(f"missing metadata: {_one_line(exc)}") from exc
    except ValueError as exc:
        raise CLIError(_one_line(exc)) from exc

    # the fitted signal first: a failure in what follows never loses the fit
    s.save(outputs["hspy"], overwrite=True)
    try:
        q = s.quantify_phases(uncertainty=getattr(args, "uncertainty", "systematic"))
        text = _table_text(s, q, path, args.k)
        outputs["txt"].write_text(text, encoding="utf-8")
        q.to_csv(outputs["csv"])
        fig = s.plot_phases(
            filename=outputs["png"], log=args.log, title=f"{path.name}: {args.k} phases"
        )
        plt.close(fig)
        _write_element_maps(s, outputs)
    except (OSError, ValueError) as exc:
        raise CLIError(
            f"{_one_line(exc)} (the fitted signal is saved in {outputs['hspy']}; "
            "hs.load it to look at the results)"
        ) from exc
    if not args.quiet:
        print(text)
    for kind, p in outputs.items():
        print(
            f"wrote {p}"
            + {
                "png": " (figure)",
                "txt": " (table)",
                "csv": " (table, CSV)",
                "hspy": " (fitted signal)",
                "elements.hspy": " (element maps, at.%)",
                "elements.png": " (element maps, figure)",
            }[kind]
        )
    return outputs


def _write_element_maps(s, outputs: dict[str, Path]) -> None:
    """The at.% element maps as one .hspy (elements × map) and, for 2-D maps, a figure."""
    import matplotlib.pyplot as plt

    from esmpy_hs.plotting import plot_element_maps
    from esmpy_hs.signals._maps import stack_element_maps

    if s.axes_manager.navigation_dimension == 0:
        outputs.pop("elements.hspy")
        outputs.pop("elements.png")
        return
    maps = s.get_element_maps("at.%")
    stack_element_maps(maps).save(outputs["elements.hspy"], overwrite=True)
    if s.axes_manager.navigation_dimension == 2:
        fig = plot_element_maps(maps, sigma=True, filename=outputs["elements.png"])
        plt.close(fig)
    else:
        outputs.pop("elements.png")


def _run_decompose(args) -> int:
    _decompose(args)
    return 0


def _run_demo(args) -> int:
    from esmpy_hs.demo import DEMO_MAX_ITER, run_demo

    run_demo(
        args.output_dir,
        shape=args.size,
        dose=args.dose,
        max_iter=DEMO_MAX_ITER if args.max_iter is None else args.max_iter,
        random_state=args.seed,
        progress=not args.quiet,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``esmpy-hs`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _quiet_imports()
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except CLIError as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"{PROG}: error: {type(exc).__name__}: {_one_line(exc)} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
