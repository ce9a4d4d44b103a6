"""Deployable model files: a TorchScript archive that C++ (the LAMMPS pair style) runs without
Python. See :mod:`euclidnn.export.torchscript` for the file's contract.

Only ``cli`` and md's LAMMPS engine import this package; model code never does. Importing it
registers the custom op an export may call (``euclidnn::uvu_conv``), so :func:`load_exported`
reads every export.
"""

from euclidnn.kernels import ops as _ops

from .torchscript import FORMAT, FORMAT_VERSION, METADATA_FILE, export, load_exported

_ops.register()

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_FILE", "export", "load_exported"]
