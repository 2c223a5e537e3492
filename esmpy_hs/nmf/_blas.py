"""One BLAS thread around the fit loops.

The loops alternate the compiled passes over the counts (numba threads on every core) with small
NumPy products (``G·W``, the W update, the refresh callbacks). OpenBLAS's threads keep spinning for
a while after a product and then compete with numba's for the cores, which slowed the passes
inside a fit (measured in docs/validation.rst, issue 18). The products here are thin (k
columns), so one thread costs them nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

#: False: the fit loops (:func:`with_one_blas_thread`) leave the BLAS threads alone (the
#: behaviour before; for measurements). :func:`one_blas_thread` itself always limits them.
ENABLED = True
#: whether threadpoolctl, which sets the limit, is installed (without it nothing is limited)
AVAILABLE = importlib.util.find_spec("threadpoolctl") is not None

_STATE: dict[str, Any] = {"depth": 0, "controller": None}

F = TypeVar("F", bound=Callable[..., Any])


def _look_up(factory: Callable[[], Any]) -> Any:
    """``factory()`` with Ctrl-C held back until it returns.

    threadpoolctl finds the loaded libraries through a C callback (``dl_iterate_phdr``), and a
    KeyboardInterrupt raised inside a ctypes callback is printed and dropped: a Ctrl-C in those
    milliseconds would be lost and the fit run on. In the main thread SIGINT is caught here
    during the look-up and handed to the previous handler after it.
    """
    if threading.current_thread() is not threading.main_thread():
        return factory()
    caught: list[Any] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        out = factory()
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        if callable(previous):
            previous(signal.SIGINT, caught[0])
        elif previous == signal.SIG_DFL:  # pragma: no cover - Python installs its own handler
            raise KeyboardInterrupt
    return out


def _limit() -> Any:
    """A context setting the BLAS libraries to one thread. The libraries are looked up once
    (``threadpoolctl.ThreadpoolController``, milliseconds) and the controller kept (≈ 10 µs a
    use)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return nullcontext()
    if _STATE["controller"] is None:
        import scipy.linalg  # noqa: F401  (SciPy's own BLAS loaded before the look-up)

        _STATE["controller"] = _look_up(ThreadpoolController)
    return _STATE["controller"].limit(limits=1, user_api="blas")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """One BLAS thread inside (nothing without threadpoolctl); nested uses set the limit
    once."""
    if _STATE["depth"]:
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
    """Decorator for the fit loops: ``func`` runs inside :func:`one_blas_thread` (unless
    :data:`ENABLED` is False)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not ENABLED:
            return func(*args, **kwargs)
        with one_blas_thread():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
