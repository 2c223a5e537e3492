"""One BLAS thread around the fit loops.

The loops alternate the compiled passes over the counts (numba threads on every core) with small
NumPy products (``G·W``, the W update, the refresh callbacks). OpenBLAS's threads keep spinning for
a while after a product and then compete with numba's for the cores, which slowed the passes
inside a fit (measured in docs/validation.rst, issue 18). The products here are thin (k
columns), so one thread costs them nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

#: False: leave the BLAS threads alone (the behaviour before; for measurements)
ENABLED = True

_STATE: dict[str, Any] = {"depth": 0, "controller": None}

F = TypeVar("F", bound=Callable[..., Any])


def _limit() -> Any:
    """A context setting the BLAS libraries to one thread. The libraries are looked up once
    (``threadpoolctl.ThreadpoolController``, 10–25 ms) and the controller kept (≈ 10 µs a use)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext()
    if _STATE["controller"] is None:
        import scipy.linalg  # noqa: F401  (SciPy's own BLAS loaded before the look-up)

        _STATE["controller"] = ThreadpoolController()
    return _STATE["controller"].limit(limits=1, user_api="blas")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread inside (nothing without threadpoolctl, or with :data:`ENABLED` False);
    nested uses set the limit once."""
    if _STATE["depth"] or not ENABLED:
        _STATE["depth"] += 1
        try:
            yield
        finally:
            _STATE["depth"] -= 1
        return
    with _limit():
        _STATE["depth"] += 1
        try:
            yield
        finally:
            _STATE["depth"] -= 1


def with_one_blas_thread(func: F) -> F:
    """Decorator: ``func`` runs inside :func:`one_blas_thread`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with one_blas_thread():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
