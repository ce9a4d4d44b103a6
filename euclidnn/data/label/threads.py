"""OpenMP thread counts of tblite and PySCF, set for one call and restored after it.

The thread count is OpenMP's ``nthreads-var``, kept per calling thread, and it is also what
``torch.get_num_threads()`` reports. With the Linux wheels, tblite and PyTorch share one OpenMP
runtime: tblite's extension needs ``libgomp.so.1`` by soname, and whichever of the two is
imported first loads the only copy both use. PySCF ships its own renamed copy, but when PyTorch
is imported first, PySCF's helper library binds ``omp_set_num_threads`` to PyTorch's copy
(loaded into the global symbol scope). A setting left in place for tblite or PySCF would
therefore change PyTorch's threads for the rest of the process; each call here sets it in the
calling thread and puts the previous value back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

__all__ = ["tblite_threads", "pyscf_threads"]


@contextmanager
def _openmp_threads(
    get: Callable[[], int], set_: Callable[[int], object], threads: int
) -> Iterator[None]:
    """Run the body with ``threads`` OpenMP threads (through ``set_``), then restore ``get()``."""
    previous = int(get())
    set_(int(threads))
    try:
        yield
    finally:
        set_(previous)


def _tblite_runtime():
    """The OpenMP runtime tblite calls, as a ``ctypes`` library, or None without one.

    Looked up through tblite's own extension first (``dlsym`` on its handle searches the
    libraries it was linked against), then by the runtimes' usual names.
    """
    import ctypes

    names = ["libgomp.so.1", "libomp.so", "libomp.dylib", "libgomp.1.dylib"]
    try:
        from tblite import _libtblite

        names.insert(0, _libtblite.__file__)
    except (ImportError, AttributeError):
        pass
    for name in names:
        try:
            runtime = ctypes.CDLL(name)
            runtime.omp_get_max_threads, runtime.omp_set_num_threads  # noqa: B018
        except (OSError, AttributeError):
            continue
        return runtime
    return None


def tblite_threads(threads: int | None) -> AbstractContextManager[None]:
    """Context in which tblite runs ``threads`` OpenMP threads (None: leave them as they are).

    OMP_NUM_THREADS only counts when the runtime is loaded, hence the run-time setting. One
    thread is fastest for molecules of tens of atoms, and spinning OpenMP threads slow down
    badly on a busy machine.
    """
    runtime = _tblite_runtime() if threads is not None else None
    if runtime is None:
        return nullcontext()
    return _openmp_threads(runtime.omp_get_max_threads, runtime.omp_set_num_threads, threads)


def pyscf_threads(threads: int | None) -> AbstractContextManager[None]:
    """Context in which PySCF runs ``threads`` OpenMP threads (None: PySCF's own setting)."""
    if threads is None:
        return nullcontext()
    from pyscf import lib

    return _openmp_threads(lib.num_threads, lib.num_threads, threads)
