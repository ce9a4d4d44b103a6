r"""Response properties of a converged SCF: dipole moment (e·Å) and static polarizability (Å³).

Units, both converted with ``ase.units`` (never retyped):

- dipole μ in **e·Å** (PySCF's atomic unit e·bohr times ``ase.units.Bohr``; 1 D =
  ``ase.units.Debye`` e·Å ≈ 0.2082 e·Å), origin-independent for a neutral molecule;
- polarizability α in **Å³** — the "polarizability volume" α/(4πε₀): the atomic unit of α
  is 4πε₀ a₀³, so α in Å³ is the number in atomic units times ``ase.units.Bohr**3``. (In
  e²Å²/eV, multiply by 4πε₀ = 1 / 14.3996 e²/(eV·Å).)

The polarizability is analytic: α_ij = −∂²E/∂F_i∂F_j from the coupled-perturbed SCF
equations (CPHF/CPKS) of the field perturbation H' = F·r, solved with PySCF's ``cphf.solve``
and the mean field's own response function (exchange–correlation kernel included, density
fitting where the SCF used it). Closed-shell (restricted) only. Tested against finite fields.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PROPERTY_UNITS", "dipole_moment", "polarizability", "check_properties"]

#: property -> unit written in the frame headers
PROPERTY_UNITS = {"dipole": "e*Angstrom", "polarizability": "Angstrom^3"}


def check_properties(properties, is_xtb: bool, multiplicity: int) -> tuple[str, ...]:
    """Validate the requested property names for a level of theory; returns them as a tuple.

    >>> check_properties(["dipole"], is_xtb=True, multiplicity=1)
    ('dipole',)
    """
    properties = tuple(properties)
    unknown = [p for p in properties if p not in PROPERTY_UNITS]
    if unknown:
        raise ValueError(f"properties: unknown {unknown}; known: {', '.join(PROPERTY_UNITS)}")
    if "polarizability" in properties and is_xtb:
        raise ValueError("properties: polarizability needs HF/DFT (PySCF), not xTB")
    if "polarizability" in properties and multiplicity != 1:
        raise ValueError("properties: polarizability is implemented for closed shells only")
    return properties


def _charge_centre(mol) -> np.ndarray:
    charges = mol.atom_charges()
    return np.einsum("i,ix->x", charges, mol.atom_coords()) / charges.sum()  # bohr


def dipole_moment(mf) -> np.ndarray:
    """Dipole moment of a converged mean field, e·Å (origin: nuclear charge centre).

    Shapes: → [3]
    """
    from ase.units import Bohr

    mol = mf.mol
    with mol.with_common_orig(_charge_centre(mol)):
        dipole = mf.dip_moment(mol, mf.make_rdm1(), unit="AU", verbose=0)  # e·bohr
    return np.asarray(dipole, dtype=np.float64) * Bohr


def polarizability(mf, tol: float = 1e-9, max_cycle: int = 50) -> np.ndarray:
    r"""Static dipole polarizability of a converged restricted mean field, Å³.

    With h¹_x = C_virᵀ r_x C_occ (the field perturbation H' = F·r in the MO basis) and U_x
    the CPHF solution (first-order virtual–occupied orbital response to F_x),
    e2_xy = Σ_ai h¹_x,ai U_y,ai and α = −2 (e2 + e2ᵀ) in atomic units (a₀³), then × Bohr³.

    Shapes: → [3, 3] (symmetric)
    """
    from ase.units import Bohr
    from pyscf.scf import cphf

    mol = mf.mol
    mo_energy, mo_coeff, mo_occ = mf.mo_energy, mf.mo_coeff, mf.mo_occ
    if np.asarray(mo_coeff).ndim != 2:
        raise ValueError("polarizability: closed-shell (restricted) mean fields only")
    occupied, virtual = mo_coeff[:, mo_occ > 0], mo_coeff[:, mo_occ == 0]
    with mol.with_common_orig(_charge_centre(mol)):
        position = mol.intor_symmetric("int1e_r", comp=3)  # [3, nao, nao] bohr
    h1 = np.einsum("xpq,pa,qi->xai", position, virtual, occupied)  # [3, nvir, nocc]
    response = mf.gen_response(hermi=1)
    nvir, nocc = virtual.shape[1], occupied.shape[1]

    def induced(mo1):
        mo1 = mo1.reshape(-1, nvir, nocc)
        dm1 = np.einsum("pa,xai,qi->xpq", virtual, 2 * mo1, occupied)  # ×2: double occupancy
        v1 = response(dm1 + dm1.transpose(0, 2, 1))
        return np.einsum("pa,xpq,qi->xai", virtual, v1, occupied).ravel()

    mo1 = cphf.solve(induced, mo_energy, mo_occ, h1, None, max_cycle, tol, verbose=0)[0]
    e2 = np.einsum("xpi,ypi->xy", h1, mo1)
    alpha = -2 * (e2 + e2.T)  # atomic units, a0³ (4πε₀ = 1)
    return alpha * Bohr**3
