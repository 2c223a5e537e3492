"""The one-command demo: simulate the reference sample, unmix it, compare with the truth.

``esmpy-hs demo`` (or ``python -m esmpy_hs demo``) calls :func:`run_demo`:

1. simulate the validation study's three-phase sample (:func:`esmpy_hs.datasets.reference_sample`:
   128 × 128 pixels, 1980 channels, 293 counts per pixel, Poisson noise);
2. fit it with ``s.decomposition(algorithm="smart_nmf", output_dimension=3)`` (the solver's default
   settings, with a progress bar);
3. print the composition of each fitted phase next to the true composition of the phase it
   matches (:func:`esmpy_hs.metrics.score`), and the spectral angles and map errors;
4. write ``esmpy_demo.png`` (:func:`esmpy_hs.plotting.plot_phases`) and ``esmpy_demo.hspy`` (the
   fitted signal; ``hs.load("esmpy_demo.hspy").quantify_phases()`` works on it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEMO_MAX_ITER", "DemoResult", "comparison_table", "run_demo"]

#: Iteration cap of the demo, to keep it under a minute on two cores.
DEMO_MAX_ITER = 1000


@dataclass
class DemoResult:
    """What :func:`run_demo` made.

    Attributes
    ----------
    signal : EDSespm
        The simulated, fitted signal (ground truth in ``metadata.ESMPY_truth``).
    quantification : esmpy_hs.physics.Quantification
        The fitted compositions.
    score : esmpy_hs.metrics.Score
        Angles, map errors and the matching of fitted to true phases.
    table : str
        The printed comparison table.
    figure : pathlib.Path
        The PNG figure.
    result : pathlib.Path
        The ``.hspy`` file.
    timings : dict
        Seconds spent simulating, fitting and writing.
    """

    signal: Any
    quantification: Any
    score: Any
    table: str
    figure: Path
    result: Path
    timings: dict[str, float] = field(default_factory=dict)


def comparison_table(quantification, truth_compositions: dict, permutation) -> str:
    """Fitted at.% (± 1σ) of each phase beside the true at.% of the phase it matches.

    Parameters
    ----------
    quantification : esmpy_hs.physics.Quantification
        The fit's compositions (phases in component order).
    truth_compositions : dict
        ``{true phase: {element: atomic fraction}}``, in the order of ``permutation``.
    permutation : sequence of int
        ``permutation[i]``: the fitted component matched to true phase ``i``.

    Returns
    -------
    str
        One block per true phase; the truth is renormalised over the quantified elements.
    """
    q = quantification
    elements = list(q.elements)
    lines = []
    for i, (true_name, comp) in enumerate(truth_compositions.items()):
        j = int(permutation[i])
        fit_name = q.phase_names[j]
        total = sum(float(comp.get(el, 0.0)) for el in elements) or 1.0
        lines.append(f"{fit_name}  ↔  {true_name}")
        lines.append(f"  {'element':<8}{'fit at.%':>16}{'truth at.%':>13}")
        at, err = q.atomic_percent[fit_name], q.atomic_percent_error[fit_name]
        for el in sorted(elements, key=lambda e: -max(at[e], float(comp.get(e, 0.0)))):
            true = 100.0 * float(comp.get(el, 0.0)) / total
            if at[el] < 0.05 and true < 0.05:
                continue
            lines.append(f"  {el:<8}{at[el]:>8.2f} ± {err[el]:<5.2f}{true:>11.2f}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def run_demo(
    output_dir: str | Path = ".",
    *,
    shape: tuple[int, int] = (128, 128),
    dose: float = 293.0,
    max_iter: int | None = DEMO_MAX_ITER,
    random_state: int = 0,
    prefix: str = "esmpy_demo",
    progress: bool = True,
    verbose: bool = True,
) -> DemoResult:
    """Simulate the reference sample, fit it, print the table, write the figure and the result.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        Folder for ``{prefix}.png`` and ``{prefix}.hspy`` (created if needed).
    shape : (int, int)
        Map size in pixels (the reference is 128 × 128; smaller is faster).
    dose : float
        Mean counts per pixel (293: the study's "high signal" case; 18: "low signal").
    max_iter : int or None
        Iteration cap of the fit (None: the solver's default).
    random_state : int
        Seed of the Poisson noise.
    prefix : str
        Stem of the output file names.
    progress : bool
        Show the fit's progress bar and notices.
    verbose : bool
        Print the steps and the table.

    Returns
    -------
    DemoResult
    """
    import matplotlib.pyplot as plt

    from esmpy_hs.datasets import get_truth, reference_sample
    from esmpy_hs.metrics import score
    from esmpy_hs.plotting import plot_phases

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    rows, cols = (int(n) for n in shape)
    say(
        f"Simulating the reference sample: {rows} × {cols} pixels, {dose:g} counts per pixel, "
        "3 phases (bridgmanite, ferropericlase, Ca-perovskite) …"
    )
    s = reference_sample(dose=dose, shape=(rows, cols), random_state=random_state)
    timings["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("Fitting: s.decomposition(algorithm='smart_nmf', output_dimension=3)")
    kwargs: dict[str, Any] = {"print_info": progress}
    if max_iter is not None:
        kwargs["max_iter"] = int(max_iter)
    s.decomposition(algorithm="smart_nmf", output_dimension=3, **kwargs)
    timings["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    q = s.quantify_phases()
    sc = score(s, quantify=False)
    truth = get_truth(s)
    names = list(truth["phase_names"])
    comps = truth.get("compositions") or {n: {} for n in names}
    truth_comps = {n: dict(comps.get(n, {})) for n in names}
    table = comparison_table(q, truth_comps, sc.permutation)
    say("")
    say("Composition of each fitted phase beside the truth (at.%, ± 1σ counting error):")
    say("")
    say(table)
    say("Spectral angle and abundance-map error of each phase (lower is better):")
    say(str(sc))
    say("")

    matched = {int(j): names[i] for i, j in enumerate(sc.permutation)}
    titles = [f"{q.phase_names[j]} ≈ {matched.get(j, '?')}" for j in range(q.n_phases)]
    figure = out / f"{prefix}.png"
    result = out / f"{prefix}.hspy"
    fig = plot_phases(
        s, phase_names=titles, filename=figure, title=f"esmpy-hs demo: {s.metadata.General.title}"
    )
    plt.close(fig)
    s.save(result, overwrite=True)
    timings["write"] = time.perf_counter() - t0
    say(f"Wrote {figure} (maps, spectra with the per-element model, compositions)")
    say(f"Wrote {result} (load with hs.load({str(result)!r}); .quantify_phases() gives the table)")
    say("Times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return DemoResult(s, q, sc, table, figure, result, timings)
