"""Interatomic potentials: SchNet (invariant), NequIP and Allegro (equivariant), predict(),
save/load.

A model maps a :class:`~euclidnn.data.Graph` to the energy per structure [n_graphs] eV;
:func:`predict` adds forces −∂E/∂R and stress (1/V) ∂E/∂ε with one autograd call.
"""

from .allegro import Allegro, AllegroConfig, AllegroLayer
from .common import PerSpeciesScaleShift, SpeciesIndex, shifted_softplus
from .heads import TensorHead, TensorHeadConfig, symmetric_matrix
from .interface import Potential
from .io import build_model, load_model, save_model
from .nequip import NequIP, NequIPConfig, NequIPLayer
from .predict import Prediction, predict
from .schnet import SchNet, SchNetConfig, SchNetInteraction

__all__ = [
    "Allegro",
    "AllegroConfig",
    "AllegroLayer",
    "NequIP",
    "NequIPConfig",
    "NequIPLayer",
    "PerSpeciesScaleShift",
    "Potential",
    "Prediction",
    "SchNet",
    "SchNetConfig",
    "SchNetInteraction",
    "SpeciesIndex",
    "TensorHead",
    "TensorHeadConfig",
    "build_model",
    "load_model",
    "predict",
    "save_model",
    "shifted_softplus",
    "symmetric_matrix",
]
