r"""Local chemical potential Ω_Z(r): the energy of a probe atom that listens but does not speak.

A probe atom of element Z at r receives messages from the molecule's atoms within r_max but
sends none: its outgoing edges (``edge_src`` = probe) are removed from the graph. The
molecule's atoms therefore have exactly the features, and atomic energies, they have without
the probe, and the probe's own atomic energy ε_Z(r) is the local chemical potential of the
SchNet paper (Schütt et al., J. Chem. Phys. 148, 241722 (2018), Fig. 5):

    Ω_Z(r) = ε_Z(r) − ε_Z(∞)   (eV; ε_Z(∞): the probe alone, no neighbours)

Because probes send nothing, many probes can share one molecule: :func:`probe_graph` puts the
molecule in graph 0 and probe p alone in graph p + 1, with edges from the molecule's atoms to
each probe, so the model's energy of graph p + 1 is ε_Z(r_p) — no subtraction of large
molecular energies, and the molecule is evaluated once per batch. This works for any model
that sums atomic energies per graph (SchNet, NequIP).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from euclidnn.data.graph import Graph
from euclidnn.data.structure import Structure
from euclidnn.models.interface import Potential

__all__ = [
    "probe_graph",
    "drop_outgoing_edges",
    "local_chemical_potential",
    "isosurface_points",
    "plane_points",
]


def drop_outgoing_edges(graph: Graph, atom: int) -> Graph:
    """Copy of ``graph`` without the edges whose source is ``atom`` (it receives, never sends).

    >>> s = Structure([1, 1, 1], [[0, 0, 0], [0, 0, 0.8], [0, 0.8, 0]])
    >>> g = drop_outgoing_edges(Graph.from_structure(s, r_max=2.0), atom=2)
    >>> 2 in g.edge_src.tolist(), 2 in g.edge_dst.tolist()
    (False, True)
    """
    keep = graph.edge_src != atom
    return Graph(
        positions=graph.positions,
        numbers=graph.numbers,
        cell=graph.cell,
        pbc=graph.pbc,
        batch=graph.batch,
        edge_src=graph.edge_src[keep],
        edge_dst=graph.edge_dst[keep],
        edge_shift=graph.edge_shift[keep],
        num_atoms=graph.num_atoms,
    )


def probe_graph(
    structure: Structure,
    points: Tensor | np.ndarray,
    probe_number: int,
    r_max: float,
    dtype: torch.dtype | None = None,
) -> Graph:
    """The molecule (graph 0) and one listening probe atom at each point (graph p + 1).

    Edges: the molecule's own (neighbour list at ``r_max``), and j → probe p for every atom j
    of the molecule with ‖r_p − r_j‖ < r_max. No edge leaves a probe, so the probes see
    neither each other nor act on the molecule: the graph is
    :func:`drop_outgoing_edges` of the molecule with a probe, once per probe, sharing the
    molecule. Energies of graph p + 1 are the probe's atomic energy.

    Shapes: points: [n_points, 3] Å → Graph with n_atoms + n_points atoms, 1 + n_points graphs

    >>> s = Structure([1, 1], [[0, 0, 0], [0, 0, 0.74]])
    >>> g = probe_graph(s, np.array([[0, 0, 2.0], [0, 0, 9.0]]), 6, r_max=3.0)
    >>> g.num_graphs, g.batch.tolist(), sorted(zip(g.edge_src.tolist(), g.edge_dst.tolist()))
    (3, [0, 0, 1, 2], [(0, 1), (0, 2), (1, 0), (1, 2)])
    """
    if structure.pbc.any():
        raise ValueError(
            "probe_graph: the local chemical potential is defined here for molecules; "
            f"the structure is periodic (pbc {structure.pbc.tolist()})"
        )
    dtype = dtype or torch.get_default_dtype()
    molecule = Graph.from_structure(structure, r_max, dtype)
    probes = torch.as_tensor(np.asarray(points), dtype=dtype).reshape(-1, 3)  # [P, 3]
    n_atoms, n_probes = structure.num_atoms, probes.shape[0]
    distance = torch.cdist(probes, molecule.positions)  # [P, n_atoms] Å
    probe_index, atom_index = torch.nonzero(distance < r_max, as_tuple=True)
    index = torch.int64
    return Graph(
        positions=torch.cat([molecule.positions, probes]),
        numbers=torch.cat(
            [molecule.numbers, torch.full((n_probes,), int(probe_number), dtype=index)]
        ),
        cell=torch.zeros(1 + n_probes, 3, 3, dtype=dtype),
        pbc=torch.zeros(1 + n_probes, 3, dtype=torch.bool),
        batch=torch.cat([molecule.batch, torch.arange(1, n_probes + 1, dtype=index)]),
        edge_src=torch.cat([molecule.edge_src, atom_index]),
        edge_dst=torch.cat([molecule.edge_dst, n_atoms + probe_index]),
        edge_shift=torch.zeros(molecule.num_edges + atom_index.shape[0], 3, dtype=dtype),
        num_atoms=torch.cat([molecule.num_atoms, torch.ones(n_probes, dtype=index)]),
    )


def _model_settings(model: Potential) -> tuple[float, torch.dtype]:
    if not model.predicts_energy:
        raise TypeError(
            f"{type(model).__name__}: the local chemical potential needs an energy model, "
            "not a property head"
        )
    return model.cutoff, model.dtype


def local_chemical_potential(
    model: Potential,
    structure: Structure,
    points: Tensor | np.ndarray,
    probe_number: int,
    *,
    batch_size: int = 2048,
    relative: bool = True,
) -> Tensor:
    """Ω_Z(r) of a probe atom (atomic number ``probe_number``) at each point, in eV.

    Evaluated ``batch_size`` points at a time with :func:`probe_graph`; ``relative`` subtracts
    the isolated probe's energy ε_Z(∞), so Ω → 0 far from the molecule (else Ω = ε_Z(r)).
    A point closer than about 0.5 Å to an atom gives numbers of no chemical meaning.

    Shapes: points: [n_points, 3] Å → [n_points] eV, in the model's dtype

    >>> from euclidnn.models import SchNet, SchNetConfig
    >>> model = SchNet(SchNetConfig(species=(1, 6), num_features=8, r_max=4.0))
    >>> s = Structure([6, 1], [[0, 0, 0], [0, 0, 1.1]])
    >>> omega = local_chemical_potential(model, s, np.array([[0, 0, 3.0], [0, 0, 50.0]]), 6)
    >>> omega.shape, abs(omega[1].item()) < 1e-6  # beyond r_max: 0 up to float32 rounding
    (torch.Size([2]), True)
    """
    r_max, dtype = _model_settings(model)
    points = torch.as_tensor(np.asarray(points), dtype=dtype).reshape(-1, 3)
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    parts = []
    with torch.no_grad():
        for start in range(0, points.shape[0], batch_size):
            graph = probe_graph(
                structure, points[start : start + batch_size], probe_number, r_max, dtype
            )
            parts.append(model(graph)[1:])
        omega = torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)
        if relative:
            alone = Graph.from_structure(Structure([probe_number], [[0.0, 0.0, 0.0]]), r_max, dtype)
            omega = omega - model(alone)[0]
    return omega


def isosurface_points(
    positions: np.ndarray,
    level: float,
    num_theta: int = 48,
    num_phi: int = 96,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Points of the surface Σ_i ‖r − r_i‖ = c on a (θ, φ) grid of rays from the centroid.

    f(r) = Σ_i ‖r − r_i‖ is convex, so when f(centroid) < c every ray r = r̄ + t û, t > 0,
    crosses the surface exactly once; t is found by bisection between 0 and
    (c + Σ_i ‖r_i − r̄‖) / n, where f ≥ c (triangle inequality). θ ∈ (0, π) at cell centres,
    φ ∈ [0, 2π).

    Shapes: positions: [n_atoms, 3] Å → (points [num_theta · num_phi, 3] Å, theta [num_theta],
    phi [num_phi]); points are ordered θ-major (reshape to [num_theta, num_phi, 3]).

    >>> p, theta, phi = isosurface_points(np.zeros((1, 3)), level=2.0, num_theta=4, num_phi=8)
    >>> p.shape, bool(np.allclose(np.linalg.norm(p, axis=1), 2.0))
    ((32, 3), True)
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    centre = positions.mean(axis=0)
    inside = np.linalg.norm(positions - centre, axis=1).sum()
    if inside >= level:
        raise ValueError(
            f"isosurface level {level:.3f} Å must exceed Σ‖r̄ − r_i‖ = {inside:.3f} Å at the centroid"
        )
    theta = (np.arange(num_theta) + 0.5) * np.pi / num_theta
    phi = np.arange(num_phi) * 2 * np.pi / num_phi
    t_grid, p_grid = np.meshgrid(theta, phi, indexing="ij")
    directions = np.stack(
        [np.sin(t_grid) * np.cos(p_grid), np.sin(t_grid) * np.sin(p_grid), np.cos(t_grid)], -1
    ).reshape(-1, 3)
    low = np.zeros(len(directions))
    high = np.full(len(directions), (level + inside) / len(positions))
    for _ in range(60):  # bisection to ~1e-18 of the bracket
        middle = 0.5 * (low + high)
        points = centre + middle[:, None] * directions
        value = np.linalg.norm(points[:, None] - positions[None], axis=-1).sum(-1)
        outside = value >= level
        high = np.where(outside, middle, high)
        low = np.where(outside, low, middle)
    return centre + 0.5 * (low + high)[:, None] * directions, theta, phi


def plane_points(
    positions: np.ndarray, spacing: float = 0.1, margin: float = 2.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A square grid in the molecule's best plane (through the centroid, spanned by the two
    largest principal axes of the positions), ``margin`` Å beyond the atoms.

    Shapes: positions: [n_atoms, 3] → (points [n_v · n_u, 3] Å (v-major), u [n_u], v [n_v])
    in-plane coordinates in Å; the atoms' in-plane coordinates are ``(r − r̄) @ axes.T``.

    >>> p, u, v = plane_points(np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]), spacing=0.5, margin=1)
    >>> bool(np.allclose(p[:, 2], 0)), p.shape[0] == len(u) * len(v)
    (True, True)
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    centre = positions.mean(axis=0)
    axes = plane_axes(positions)
    inplane = (positions - centre) @ axes.T  # [n, 2]
    low, high = inplane.min(axis=0) - margin, inplane.max(axis=0) + margin
    u = np.arange(low[0], high[0] + 1e-9, spacing)
    v = np.arange(low[1], high[1] + 1e-9, spacing)
    uu, vv = np.meshgrid(u, v, indexing="xy")  # [n_v, n_u]
    points = centre + uu.reshape(-1, 1) * axes[0] + vv.reshape(-1, 1) * axes[1]
    return points, u, v


def plane_axes(positions: np.ndarray) -> np.ndarray:
    """Two orthonormal in-plane axes of a point set (largest principal axes; for fewer than
    three atoms or collinear atoms, completed with any orthogonal direction).

    Shapes: positions: [n_atoms, 3] → [2, 3]
    """
    centred = np.asarray(positions, dtype=np.float64) - np.mean(positions, axis=0)
    _, _, vt = np.linalg.svd(np.vstack([centred, np.zeros((3, 3))]), full_matrices=True)
    return vt[:2]
