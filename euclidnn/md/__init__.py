"""Simulation with a trained potential: the ASE calculator, MD, path-integral MD, analysis.

:class:`Calculator` serves a model to ASE; :func:`run_md` runs NVE/NVT/NPT with ASE's
integrators or our :class:`StochasticVelocityRescaling` (Bussi) thermostat; :func:`run_pimd`
runs path-integral MD with i-PI, the model serving forces over its socket (:func:`serve`);
:mod:`euclidnn.md.analysis` turns runs into distributions, spectra and normal modes.
"""

from .calculator import Calculator
from .pimd import PIMDConfig, PIMDResult, run_pimd
from .run import MDConfig, MDResult, read_log, run_md
from .serve import Address, serve
from .thermostat import StochasticVelocityRescaling

__all__ = [
    "Address",
    "Calculator",
    "MDConfig",
    "MDResult",
    "PIMDConfig",
    "PIMDResult",
    "StochasticVelocityRescaling",
    "read_log",
    "run_md",
    "run_pimd",
    "serve",
]
