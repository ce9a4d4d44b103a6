"""Make reference data: sample configurations by Langevin MD and label them with xTB or DFT.

Two stages, both deterministic from the seed:

1. **sample** (:mod:`.sampling`): Langevin MD driven by xTB (tblite; GFN2-xTB for a molecule,
   the labelling method for a periodic cell) at ``Sampling.temperature``; after
   ``equilibration`` steps every ``interval``-th step is kept. The geometries go to
   ``<output>.sampled.xyz``, written once to a temporary file and renamed, so the trajectory
   a resumed run labels is the very one the interrupted run was labelling.
2. **label** (:mod:`.labellers`, :mod:`.run`): each sampled geometry, in order, is labelled
   (GFN2-xTB, or DFT/HF with PySCF: density fitting, analytic gradient, previous density matrix
   as the SCF guess) and appended to ``<output>`` as one extxyz frame; the file is flushed and
   fsync'd after every frame, with Ctrl-C held back while a frame is written.

A periodic cell (extxyz with ``Lattice=`` and ``pbc="T T T"``) keeps its cell and pbc in every
frame and is labelled with xTB only, stress included (eV/Å³, positive = tensile); the header
states tblite's treatment of the cell (Γ point, Ewald electrostatics: :mod:`.labellers`).
The starting structure is checked first (:mod:`.inputs`).

Resuming (:mod:`.resume`) = counting the complete frames in ``<output>`` (a truncated trailing
frame left by a kill is dropped) and labelling the rest, so an interrupted and resumed run
writes the same file as an uninterrupted one. Frames are in eV and Å; every frame's header
records the level of theory, the units and the sampling settings.

tblite and pyscf are imported lazily, inside the functions that need them. Their OpenMP
thread counts are set for each call and restored after it (:mod:`.threads`): tblite and
PySCF can share PyTorch's OpenMP runtime.
"""

from ..molecules import list_molecules, load_molecule  # at home in euclidnn.data.molecules
from .labellers import UNITS as UNITS
from .labellers import XTB_METHODS as XTB_METHODS
from .labellers import Labeller as Labeller
from .labellers import Level, make_labeller
from .resume import read_complete_frames
from .run import label
from .sampling import Sampling, sample

__all__ = [
    "Sampling",
    "Level",
    "load_molecule",
    "list_molecules",
    "sample",
    "read_complete_frames",
    "make_labeller",
    "label",
]
