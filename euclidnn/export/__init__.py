"""Deployable model files: a TorchScript archive that C++ (the LAMMPS pair style) runs without
Python. See :mod:`euclidnn.export.torchscript` for the file's contract.

Only ``cli`` and md's LAMMPS engine import this package; model code never does.
"""

from .torchscript import FORMAT, FORMAT_VERSION, METADATA_FILE, export, load_exported

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_FILE", "export", "load_exported"]
