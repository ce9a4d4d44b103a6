r"""``euclidnn export``: a model as one TorchScript file that C++ runs without Python.

The contract (the LAMMPS pair style depends on exactly this; ``format_version`` changes with it)
-----------------------------------------------------------------------------------------------

**File.** A TorchScript archive written by ``torch.jit.save(module, path,
_extra_files={"euclidnn.json": metadata})``; load it in C++ with ``torch::jit::load(path,
device, extra_files)`` and in Python with :func:`load_exported`.

**Metadata** (``euclidnn.json``, a JSON object)::

    {"format": "euclidnn-export", "format_version": 4,
     "model": "schnet" | "nequip" | "allegro",
     "ops": ["euclidnn::schnet_energy_forces", "euclidnn::uvu_conv"] | ["euclidnn::uvu_conv"] | [],
     (SchNet; NequIP; portable files and Allegro)
     "species": [atomic numbers, in the model's order], "symbols": ["H", "C", "O"],
     "cutoff": r_max in Å (float), "num_hops": int, "receptive_field": Å (float),
     "dtype": "float32" | "float64",
     "units": {"energy": "eV", "length": "Å", "forces": "eV/Å"},
     "euclidnn_version": "..."}

``ops``: the custom operators the file calls beyond stock libtorch. By default the fused
convolution kernel (``_conv.c``, NequIP's and SchNet's convolutions) is recorded as the custom op
``euclidnn::uvu_conv`` (:mod:`euclidnn.kernels.ops`), which a process must register before it
loads the file: ``import euclidnn.export`` does in Python, and the LAMMPS plugin compiles it in
(from the same C source). ``export(..., portable=True)`` (``euclidnn export --portable``) records
the plain PyTorch reference instead: ``ops`` is empty and stock libtorch runs the file, 5–6×
slower for NequIP in LAMMPS (bench/RESULTS.md, "LAMMPS"). Version 3 added ``ops``; version 2 files (no custom ops) still load.
Version 4 added the optional method ``energy_forces`` (below; SchNet, NequIP and Allegro, not
``portable``); SchNet's calls ``euclidnn::schnet_energy_forces``, NequIP's ``euclidnn::uvu_conv``
(as its ``forward`` does), Allegro's only stock operations; version 2 and 3 files still load.

``receptive_field`` = ``num_hops`` · ``cutoff``: how far an atom may be from atom i and still
change E_i, i.e. the ghost shell a rank needs (Allegro: one cutoff; NequIP and SchNet: one per
layer).

**Call.** ``module.forward(positions, numbers, edge_src, edge_dst, edge_shift=None, cell=None)
-> atom_energy``:

- ``positions``: [N, 3] in the model's dtype (``metadata["dtype"]``), Å, on the CPU;
- ``numbers``: [N] int64 atomic numbers, each one of ``species`` (any other is an error
  naming it, never mapped silently);
- ``edge_src``, ``edge_dst``: [E] int64 atom indices in 0 … N − 1; the edge vector is
  ``positions[edge_src] − positions[edge_dst] + edge_shift @ cell``; the list is full (both
  directions of every pair), and holds every pair closer than ``cutoff`` (pairs farther apart
  may be left out, and are ignored by the model's smooth cutoff if present);
- ``edge_shift``: [E, 3] in the model's dtype, integer values: the lattice translations of
  ``edge_src`` (an edge to a periodic image of an atom the caller holds), default zeros;
- ``cell``: [3, 3] in the model's dtype, rows the lattice vectors (Å), default zeros. Periodic
  images may also be passed as extra atoms (LAMMPS ghosts of other ranks) with zero shifts;
- returns ``atom_energy``: [N] eV in the model's dtype, E_i of every atom, ghosts included.

The caller sums E_i over the atoms it owns and takes forces as −∂(Σ E_i)/∂positions by
autograd (first derivatives; the module is differentiable in ``positions`` and ``cell``, and
the result requires grad whenever ``positions`` does). The virial is
W = Σ_i r_i ⊗ F_i − cellᵀ ∂E/∂cell (over the atoms passed). The energy of a ghost atom is wrong (its
neighbourhood is cut off) and must not be summed; its positions still receive forces, which
LAMMPS sends back to the owner (``newton on``). N = 0 and E = 0 work (a rank that owns no
atoms, an isolated atom). Inputs of the wrong shape, dtype or range raise an error with a
message (a ``c10::Error`` in C++), never crash.

**Forces without autograd (optional, version 4).** A file may have the method
``module.energy_forces(positions, numbers, edge_src, edge_dst, edge_shift=None, cell=None,
weight=None) -> (atom_energy [N], forces [N, 3], cell_grad [3, 3])``: the same ``atom_energy``
as ``forward``, ``forces`` = −∂(Σ_i weight_i E_i)/∂positions and ``cell_grad`` =
∂(Σ_i weight_i E_i)/∂cell, with ``weight`` [N] in the model's dtype (default ones). A caller
passes 1 for the atoms it owns and 0 for the others, and gets what it would get by autograd of
``forward`` (same inputs checks; the virial as above with ``cell_grad`` for ∂E/∂cell), from one
kernel call (SchNet) or a traced hand-written derivative (NequIP, Allegro). An exported
SchNet has it (:mod:`euclidnn.export.schnet`: the whole-model C kernel as the custom op
``euclidnn::schnet_energy_forces``), an exported NequIP (:mod:`euclidnn.export.nequip`:
:mod:`euclidnn.models.nequip_forces` traced, each partial derivative of a convolution the op
``euclidnn::uvu_conv`` at its slot) and an exported Allegro (:mod:`euclidnn.export.allegro`:
:mod:`euclidnn.models.allegro_forces` traced, stock operations only); each is checked against
autograd of ``forward``, with a 0/1 weight, before the file is written. A caller that finds no
such method (``portable`` files, files exported with ``EUCLIDNN_NATIVE=0`` or of a model whose
hand-written path does not apply, e.g. an Allegro with other than SiLU MLPs, versions 2 and 3)
uses autograd. The LAMMPS plugin calls it unless
``EUCLIDNN_NATIVE=0`` is set (autograd: the reference).

Why TorchScript
---------------

C++ needs forces, i.e. a backward pass: a TorchScript module keeps PyTorch's autograd, so
``torch::autograd::grad`` gives them from the same file. An AOTInductor package
(``torch._inductor.aoti_compile_and_package``) is inference-only: forces would need a second
compiled graph for the gradient, and each export would compile for minutes. The models here
cannot be compiled by ``torch.jit.script`` (they use a dataclass :class:`~euclidnn.data.Graph`,
closures and ctypes kernels), so the model is *traced* (``torch.jit.trace``). A ctypes call
cannot be traced: while tracing, :func:`euclidnn.kernels.fused_library` answers None and a
kernel runs either as its custom op, inside :func:`euclidnn.kernels.recording_ops` (the
default), or as its PyTorch reference (``portable``). The trace is wrapped in a small scripted
module that checks the inputs. A trace records operations, not Python:
sizes read through ``tensor.shape`` stay dynamic, but a Python number computed from a tensor
(``int()``, ``.item()``, ``len()``) or a branch on one would become a constant of the traced
graph. So :func:`export` checks the traced module against the model on graphs of other sizes
than the one it traced (and on N = 0 and E = 0) before it writes the file.

Measured once, before exports called the custom op (so for a portable file today; one run
each, median of 50 calls; ethanol, 9 atoms, float64, 2 CPU threads on
a machine busy with other work (load 4), default configs for H, C, O; energy and forces by
autograd from the loaded file vs eager :func:`~euclidnn.models.predict`): NequIP 74 ms vs
96 ms (eager with the C convolution kernel), Allegro 35 ms vs 52 ms, SchNet 11 ms vs 8 ms
(eager SchNet runs its whole-model C kernel). An export took 2–3 s. Rough numbers: rerun on a quiet machine
before quoting them.

The exported module runs on the device it was traced on: the CPU. (Some operations record
their device as a constant when traced; exporting for a GPU would trace on the GPU.)
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import json
import math
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ase.data import chemical_symbols
from torch import Tensor, nn

from euclidnn import kernels
from euclidnn.data.graph import Graph
from euclidnn.data.neighbors import neighbor_list
from euclidnn.export.allegro import allegro_energy_forces, allegro_op_applies
from euclidnn.export.nequip import nequip_energy_forces, nequip_op_applies
from euclidnn.export.schnet import schnet_energy_forces, schnet_op_applies
from euclidnn.files import replacing
from euclidnn.models.interface import Potential
from euclidnn.models.io import describe_model

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_FILE", "export", "load_exported"]

FORMAT = "euclidnn-export"
FORMAT_VERSION = 4
_READABLE_VERSIONS = (2, 3, 4)  # 2: no "ops" (no custom operators); 3: no energy_forces
METADATA_FILE = "euclidnn.json"
_MAX_Z = 118
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# how close the traced module must be to the model on the check graphs (relative, of the
# largest atomic energy or force): the same operations, so in practice equal
_CHECK_RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
_CHECK_SIZES = ((23, 1), (1, 2), (0, 3))  # (atoms, seed) of the check clusters


def exported_graph(
    positions: Tensor,
    numbers: Tensor,
    edge_src: Tensor,
    edge_dst: Tensor,
    edge_shift: Tensor,
    cell: Tensor,
) -> Graph:
    """The :class:`~euclidnn.data.Graph` of the exported call: one structure, edge vectors
    ``positions[edge_src] − positions[edge_dst] + edge_shift @ cell``.

    Every size comes from a tensor's shape, so a trace of it stays valid for other N and E.

    Shapes: positions: [N, 3], numbers: [N], edge_src, edge_dst: [E], edge_shift: [E, 3],
    cell: [3, 3] → Graph
    """
    return Graph(
        positions=positions,
        numbers=numbers,
        cell=cell.unsqueeze(0),
        pbc=(cell.abs().sum(-1) > 0).unsqueeze(0),
        batch=torch.zeros_like(numbers),
        edge_src=edge_src,
        edge_dst=edge_dst,
        edge_shift=edge_shift,
        num_atoms=torch.ones_like(numbers).sum().reshape(1),
    )


def _atomic_energies(model: Potential, graph: Graph) -> Tensor:
    return model.atomic_energies(graph)  # type: ignore[operator]


class _Traced(nn.Module):
    """What is traced: the six tensors of the call (and for ``energy_forces`` the atoms'
    weights) → :func:`exported_graph` → ``compute(model, graph, *weight)``: the model's
    ``atomic_energies``, or its hand-written energy and forces (:mod:`.schnet`, :mod:`.nequip`,
    :mod:`.allegro`)."""

    def __init__(self, model: Potential, compute: Callable = _atomic_energies) -> None:
        super().__init__()
        self.model, self.compute = model, compute

    def forward(
        self,
        positions: Tensor,
        numbers: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        edge_shift: Tensor,
        cell: Tensor,
        *weight: Tensor,
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        graph = exported_graph(positions, numbers, edge_src, edge_dst, edge_shift, cell)
        return self.compute(self.model, graph, *weight)


class ExportedPotential(nn.Module):
    """The scripted module of the file: checks the inputs, then calls the traced model.

    The checks are what a trace cannot keep (a branch on tensor values): shapes, dtypes, index
    ranges, and atomic numbers the model knows. They cost a few reductions over N and E.

    Shapes: positions: [N, 3], numbers: [N], edge_src, edge_dst: [E], edge_shift: [E, 3],
    cell: [3, 3] → [N] eV
    """

    def __init__(self, traced: nn.Module, species: tuple[int, ...], dtype: torch.dtype) -> None:
        super().__init__()
        self.atomic_energies = traced
        known = torch.zeros(_MAX_Z + 1, dtype=torch.bool)
        known[list(species)] = True
        self.register_buffer("known", known)
        self.species_text = str(list(species))
        self.float64 = dtype == torch.float64
        self.dtype_text = str(dtype).removeprefix("torch.")

    def forward(
        self,
        positions: Tensor,
        numbers: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        edge_shift: Tensor | None = None,
        cell: Tensor | None = None,
    ) -> Tensor:
        edge_shift, cell = self.checked(positions, numbers, edge_src, edge_dst, edge_shift, cell)
        return self.atomic_energies(positions, numbers, edge_src, edge_dst, edge_shift, cell)

    def checked(
        self,
        positions: Tensor,
        numbers: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        edge_shift: Tensor | None,
        cell: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """``ValueError`` for a bad input; ``(edge_shift, cell)`` with their defaults."""
        n = positions.shape[0]
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError("euclidnn export: positions must have shape [N, 3]")
        wanted = torch.float64 if self.float64 else torch.float32
        if positions.dtype != wanted:
            dtype = self.dtype_text
            raise ValueError(f"euclidnn export: positions must be {dtype} (the model's dtype)")
        if numbers.dim() != 1 or numbers.shape[0] != n or numbers.dtype != torch.int64:
            raise ValueError("euclidnn export: numbers must be int64 of shape [N]")
        if edge_src.dim() != 1 or edge_dst.dim() != 1 or edge_src.shape[0] != edge_dst.shape[0]:
            raise ValueError("euclidnn export: edge_src and edge_dst must have shape [E]")
        if edge_src.dtype != torch.int64 or edge_dst.dtype != torch.int64:
            raise ValueError("euclidnn export: edge_src and edge_dst must be int64")
        if edge_src.shape[0] > 0:
            low = int(torch.minimum(edge_src.min(), edge_dst.min()))
            high = int(torch.maximum(edge_src.max(), edge_dst.max()))
            bad = low if low < 0 else high
            if low < 0 or high >= n:
                raise ValueError(f"euclidnn export: edge index {bad} out of range for {n} atoms")
        if n > 0:
            valid = (numbers >= 0) & (numbers <= 118)
            known = valid & self.known[numbers.clamp(0, 118)]
            if not bool(known.all()):
                bad = int(numbers[~known][0])
                species = self.species_text
                raise ValueError(
                    f"euclidnn export: atomic number {bad} is not among the model's species {species}"
                )
        if edge_shift is None:
            edge_shift = positions.new_zeros(edge_src.shape[0], 3)
        if cell is None:
            cell = positions.new_zeros(3, 3)
        if edge_shift.shape != (edge_src.shape[0], 3) or edge_shift.dtype != positions.dtype:
            raise ValueError("euclidnn export: edge_shift must have shape [E, 3], positions' dtype")
        if cell.shape != (3, 3) or cell.dtype != positions.dtype:
            raise ValueError("euclidnn export: cell must have shape [3, 3], positions' dtype")
        return edge_shift, cell


class ExportedWithForces(ExportedPotential):
    """:class:`ExportedPotential` with the method ``energy_forces``: per-atom energies, forces
    of Σ weight_i E_i and its cell derivative without autograd, from SchNet's C kernel (the
    custom op ``euclidnn::schnet_energy_forces``, :mod:`.schnet`), NequIP's hand-written
    derivative (the convolution op ``euclidnn::uvu_conv`` at each slot, :mod:`.nequip`) or
    Allegro's (stock operations, :mod:`.allegro`).

    Shapes: as ``forward``, weight: [N] → ([N] eV, [N, 3] eV/Å, [3, 3] eV/Å)
    """

    def __init__(
        self,
        traced: nn.Module,
        traced_forces: nn.Module,
        species: tuple[int, ...],
        dtype: torch.dtype,
    ) -> None:
        super().__init__(traced, species, dtype)
        self.traced_energy_forces = traced_forces

    @torch.jit.export
    def energy_forces(
        self,
        positions: Tensor,
        numbers: Tensor,
        edge_src: Tensor,
        edge_dst: Tensor,
        edge_shift: Tensor | None = None,
        cell: Tensor | None = None,
        weight: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        edge_shift, cell = self.checked(positions, numbers, edge_src, edge_dst, edge_shift, cell)
        if weight is None:
            weight = torch.ones_like(positions[:, 0])
        if weight.shape != (positions.shape[0],) or weight.dtype != positions.dtype:
            raise ValueError("euclidnn export: weight must have shape [N], positions' dtype")
        if positions.shape[0] == 0:  # no atoms (a rank that owns none): nothing to compute
            return positions.new_zeros(0), positions.new_zeros(0, 3), positions.new_zeros(3, 3)
        return self.traced_energy_forces(
            positions, numbers, edge_src, edge_dst, edge_shift, cell, weight
        )


def example_inputs(
    species: tuple[int, ...], cutoff: float, num_atoms: int, dtype: torch.dtype, seed: int
) -> tuple[Tensor, ...]:
    """A cluster of ``num_atoms`` atoms of the model's species (in turn) on a jittered cubic
    grid 0.4 · cutoff apart, and its full edge list within ``cutoff``: what :func:`export`
    traces and checks on (any species, no data set needed).

    Shapes: → positions [num_atoms, 3], numbers [num_atoms], edge_src, edge_dst [E],
    edge_shift [E, 3] (zeros), cell [3, 3] (the identity)
    """
    generator = torch.Generator().manual_seed(seed)
    side = max(1, math.ceil(num_atoms ** (1 / 3)))
    grid = torch.cartesian_prod(*[torch.arange(side, dtype=torch.float64)] * 3).reshape(-1, 3)
    jitter = torch.rand(num_atoms, 3, generator=generator, dtype=torch.float64) - 0.5
    positions = (grid[:num_atoms] + 0.2 * jitter) * (0.4 * cutoff)
    numbers = torch.tensor(species, dtype=torch.int64).repeat(num_atoms)[:num_atoms]
    distance = torch.cdist(positions, positions)
    close = (distance < cutoff) & ~torch.eye(num_atoms, dtype=torch.bool)
    edge_dst, edge_src = close.nonzero(as_tuple=True)
    edge_shift = torch.zeros(edge_src.shape[0], 3, dtype=dtype)
    return positions.to(dtype), numbers, edge_src, edge_dst, edge_shift, torch.eye(3, dtype=dtype)


def _energies_and_forces(function, inputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    positions = inputs[0].detach().requires_grad_(True)
    energies = function(positions, *inputs[1:])
    (grad,) = torch.autograd.grad(energies.sum(), positions, allow_unused=True)
    forces = torch.zeros_like(positions) if grad is None else -grad
    return energies.detach(), forces


def _check_trace(module: nn.Module, reference: nn.Module, model: Potential) -> None:
    """``module`` (traced and scripted) against ``reference`` (the eager wrapper) on clusters
    of other sizes than the traced one, an isolated atom (E = 0) and no atoms (N = 0)."""
    dtype, rtol = model.dtype, _CHECK_RTOL[model.dtype]
    for num_atoms, seed in _CHECK_SIZES:
        inputs = example_inputs(model.species, model.cutoff, num_atoms, dtype, seed)
        got = _energies_and_forces(module, inputs)
        want = _energies_and_forces(reference, inputs)
        for name, a, b in zip(("atomic energies", "forces"), got, want):
            scale = float(b.abs().max()) if b.numel() else 0.0
            if a.shape != b.shape or not torch.allclose(a, b, rtol=0, atol=rtol * (1 + scale)):
                raise RuntimeError(
                    f"export: the traced {type(model).__name__} differs from the model in its "
                    f"{name} on {num_atoms} atoms (a Python number from a tensor in the model's "
                    "code became a constant of the trace); please report this"
                )


def _check_energy_forces(module: nn.Module, reference: nn.Module, model: Potential) -> None:
    """``module.energy_forces`` (SchNet's op, NequIP's or Allegro's hand-written derivative)
    against autograd of ``reference`` on the check clusters and on one of them in a periodic
    triclinic cell (edges with lattice shifts: the cell derivative), with a weight of 1 on some
    atoms and 0 on others (LAMMPS's owned and ghosts)."""
    dtype, rtol = model.dtype, _CHECK_RTOL[model.dtype]
    cases = [example_inputs(model.species, model.cutoff, n, dtype, s) for n, s in _CHECK_SIZES]
    cases.append(_periodic_inputs(cases[0][0], cases[0][1], model.cutoff))
    for inputs in cases:
        num_atoms = inputs[0].shape[0]
        weight = (torch.arange(num_atoms) % 3 != 2).to(dtype)
        got = module.energy_forces(*inputs, weight)
        positions = inputs[0].detach().requires_grad_(True)
        cell = inputs[5].detach().requires_grad_(True)
        want = reference(positions, *inputs[1:5], cell)
        grads = torch.autograd.grad((want * weight).sum(), (positions, cell), allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, (positions, cell))]
        for name, a, b in zip(
            ("atomic energies", "forces", "cell derivative"),
            got,
            (want.detach(), -grads[0], grads[1]),
        ):
            scale = float(b.abs().max()) if b.numel() else 0.0
            if a.shape != b.shape or not torch.allclose(a, b, rtol=0, atol=rtol * (1 + scale)):
                raise RuntimeError(
                    f"export: the {type(model).__name__} energy_forces' {name} differ from "
                    f"autograd's on {num_atoms} atoms; please report this (export with "
                    "--portable meanwhile)"
                )


def _periodic_inputs(positions: Tensor, numbers: Tensor, cutoff: float) -> tuple[Tensor, ...]:
    """``positions`` in a triclinic cell about as wide as the cluster, with every edge within
    ``cutoff`` (periodic images: lattice shifts), as the six tensors of the call."""
    side = float(positions.max()) + 0.4 * cutoff
    cell = torch.tensor([[1.0, 0, 0], [0.2, 1.0, 0], [-0.1, 0.15, 1.0]], dtype=torch.float64) * side
    src, dst, shift = neighbor_list(positions.double().numpy(), cell.numpy(), True, cutoff)
    dtype = positions.dtype
    return (positions, numbers, torch.from_numpy(src), torch.from_numpy(dst),
            torch.from_numpy(shift).to(dtype), cell.to(dtype))  # fmt: skip


def _energy_forces_module(model: Potential) -> nn.Module | None:
    """What ``energy_forces`` traces for this model (:mod:`.schnet`, :mod:`.nequip`,
    :mod:`.allegro`), or ``None``: the kernels off or unavailable, or a model whose hand-written
    path does not apply."""
    for applies, compute in (
        (schnet_op_applies, schnet_energy_forces),
        (nequip_op_applies, nequip_energy_forces),
        (allegro_op_applies, allegro_energy_forces),
    ):
        if applies(model):
            return _Traced(model, compute)
    return None


def _scripted(model: Potential, reference: nn.Module, portable: bool) -> torch.jit.ScriptModule:
    """The traced model (``reference``, and ``energy_forces`` where the model has one and not
    ``portable``) on a cluster of 12 atoms, in its scripted wrapper."""
    dtype = model.dtype
    inputs = example_inputs(model.species, model.cutoff, 12, dtype, seed=0)
    with warnings.catch_warnings():
        # the tracer warns at every Python number read from a tensor (constant weight shapes,
        # the kernels' unused bookkeeping); _check_trace tests what matters, the result on
        # other sizes. PyTorch 2.13 also marks torch.jit deprecated (libtorch still loads it).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        with contextlib.nullcontext() if portable else kernels.recording_ops():
            traced = torch.jit.trace(reference, inputs, check_trace=False)
        forces = _energy_forces_module(model) if not portable else None
        if forces is None:
            return torch.jit.script(ExportedPotential(traced, model.species, dtype))
        weight = torch.ones_like(inputs[0][:, 0])
        with kernels.recording_ops(), torch.no_grad():
            traced_forces = torch.jit.trace(forces, (*inputs, weight), check_trace=False)
        return torch.jit.script(ExportedWithForces(traced, traced_forces, model.species, dtype))


def export(
    model: Potential,
    path: str | os.PathLike,
    dtype: torch.dtype | None = None,
    *,
    portable: bool = False,
) -> dict:
    """Write ``model`` as a TorchScript file C++ can run (the contract above); returns the
    metadata written.

    The model is copied (cast to ``dtype``, default the model's own, float32 or float64), put
    in eval mode, traced on a small cluster of its species, checked on clusters of other sizes
    (:func:`_check_trace`), wrapped in :class:`ExportedPotential` and saved atomically.

    The trace records the fused convolution kernel as the custom op ``euclidnn::uvu_conv``
    where the model uses it and the kernel builds here; ``portable=True`` records the plain
    PyTorch reference instead, for a file that needs nothing but stock libtorch (slower).
    ``metadata["ops"]`` lists the custom ops the file calls. Unless ``portable``, a SchNet,
    NequIP or Allegro file also gets the method ``energy_forces`` (forces without autograd,
    traced too and checked against autograd of the traced ``forward`` by
    :func:`_check_energy_forces`).

    Raises ``ValueError`` for a model without atomic energies (a property head) or a dtype
    other than float32/float64.

    >>> import tempfile
    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> model = SchNet(SchNetConfig(species=(1, 8), num_features=4, num_interactions=1))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = export(model, f"{d}/model.pt")
    ...     module, metadata = load_exported(f"{d}/model.pt")
    >>> metadata["symbols"], metadata["receptive_field"]
    (['H', 'O'], 5.0)
    >>> module(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64),
    ...        torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)).shape
    torch.Size([0])
    """
    name, _ = describe_model(model)
    if not model.predicts_energy:
        raise ValueError(f"export: a {name} predicts a property, not an energy; nothing to export")
    dtype = dtype or model.dtype
    if dtype not in _DTYPES.values():
        raise ValueError(f"export: dtype must be float32 or float64, got {dtype}")
    model = copy.deepcopy(model).to(dtype).eval()
    model.requires_grad_(False)
    reference = _Traced(model)
    module = _scripted(model, reference, portable)
    _check_trace(module, reference, model)
    ops = custom_ops(module.inlined_graph)
    if module._c._has_method("energy_forces"):
        _check_energy_forces(module, reference, model)
        ops = sorted({*ops, *custom_ops(module.energy_forces.inlined_graph)})
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": name.lower(),
        "ops": ops,
        "species": list(model.species),
        "symbols": [chemical_symbols[z] for z in model.species],
        "cutoff": float(model.cutoff),
        "num_hops": int(model.num_hops),
        "receptive_field": float(model.receptive_field),
        "dtype": str(dtype).removeprefix("torch."),
        "units": {"energy": "eV", "length": "Å", "forces": "eV/Å"},
        "euclidnn_version": _version(),
    }
    with replacing(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        torch.jit.save(module, str(tmp), _extra_files={METADATA_FILE: json.dumps(metadata)})
    return metadata


def custom_ops(graph: torch.Graph) -> list[str]:
    """The operators outside PyTorch's own namespaces (``aten``, ``prim``, …) that a
    TorchScript graph calls, sorted: what a process must register before it loads the file."""
    found: set[str] = set()

    def visit(block) -> None:
        for node in block.nodes():
            if node.kind().split("::")[0] not in _TORCH_NAMESPACES:
                found.add(node.kind())
            for inner in node.blocks():
                visit(inner)

    visit(graph)
    return sorted(found)


_TORCH_NAMESPACES = {"aten", "prim", "onnx", "quantized", "_caffe2", "profiler"}


def load_exported(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The module and metadata of a file written by :func:`export` (on the CPU).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file when it
    is not a TorchScript archive, holds no ``euclidnn.json``, is of another format or format
    version, or calls a custom op this process does not provide.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such exported model file")
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as err:
        found = _zip_metadata(path)
        if isinstance(found, dict):
            _check_metadata(path, found)  # a clearer error where it names the cause
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a TorchScript file ({first})") from err
    try:
        metadata = json.loads(extra[METADATA_FILE] or "null")
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: {METADATA_FILE} is not JSON ({err})") from err
    _check_metadata(path, metadata)
    return module, metadata


def _check_metadata(path: Path, metadata: object) -> None:
    """``ValueError`` unless ``metadata`` is of our format, a version this euclidnn reads, and
    names only custom ops registered here."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a euclidnn export (no {METADATA_FILE} of format {FORMAT!r})")
    if metadata.get("format_version") not in _READABLE_VERSIONS:
        raise ValueError(
            f"{path}: export format version {metadata.get('format_version')!r}, this euclidnn "
            f"reads {', '.join(map(str, _READABLE_VERSIONS))}"
        )
    missing = [op for op in metadata.get("ops", []) if not kernels.ops.available(op)]
    if missing:
        raise ValueError(
            f"{path}: calls the custom op(s) {', '.join(missing)}, which this euclidnn does not "
            "provide; export the model again with this version, or with --portable"
        )


def _zip_metadata(path: Path) -> object:
    """``euclidnn.json`` read straight from the archive (a zip), or ``None``: for an archive
    that ``torch.jit.load`` refused, e.g. for an operator it does not know."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}"))
            return json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, StopIteration, ValueError):
        return None


def _version() -> str:
    try:
        return importlib.metadata.version("euclidnn")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
