"""(x, y, z) ⊗ (x, y, z) = 0e + 1e + 2e, and rotating the input rotates each part by its Wigner-D.

The outer product T_ij = a_i b_j of two polar vectors (1o ⊗ 1o) is a 9-component Cartesian
tensor. It splits into irreducible parts: the trace (0e, a scalar), the antisymmetric part
(1e, the cross product — a pseudovector) and the symmetric traceless part (2e). We build
the split twice — with CartesianTensor("ij") and directly from wigner_3j(1, 1, l) — and check:

  1. both give the same numbers, and the parts are a·b/√3, (a×b)/√2 and the 2e block;
  2. the split is exact: to_cartesian(from_cartesian(T)) = T;
  3. for random rotations *and* improper elements g ∈ O(3) (det = −1),
     part_l(g·a, g·b) = D^l(g) part_l(a, b), with D read from Irreps("0e + 1e + 2e").

Run: python examples/o3_demo.py   (a second, float64, no GPU needed)
"""

import math

import torch

from euclidnn.o3 import CartesianTensor, Irreps, rand_matrix, wigner_3j

torch.manual_seed(0)
dtype = torch.float64
n = 1000  # pairs of vectors

a = torch.randn(n, 3, dtype=dtype)
b = torch.randn(n, 3, dtype=dtype)
T = a[:, :, None] * b[:, None, :]  # [n, 3, 3]

# --- 1. the decomposition, two ways -------------------------------------------------------
ct = CartesianTensor("ij")
print(f"CartesianTensor('ij') = {ct}   (dim {ct.dim})")
parts = ct.from_cartesian(T)  # [n, 9] = [0e | 1e | 2e]

# the same with Wigner 3j symbols: part_l,m = sqrt(2l+1) Σ_ij C^{1 1 l}_{ij m} a_i b_j
by_3j = torch.cat(
    [
        math.sqrt(2 * l + 1) * torch.einsum("ijm,zi,zj->zm", wigner_3j(1, 1, l), a, b)
        for l in range(3)
    ],
    dim=1,
)

scalar = (a * b).sum(-1, keepdim=True) / math.sqrt(3)
vector = torch.linalg.cross(a, b) / math.sqrt(2)
errors = {
    "CartesianTensor vs wigner_3j": (parts - by_3j).abs().max().item(),
    "0e part vs a·b/√3": (parts[:, :1] - scalar).abs().max().item(),
    "1e part vs (a×b)/√2": (parts[:, 1:4] - vector).abs().max().item(),
    "to_cartesian(from_cartesian(T)) vs T": (ct.to_cartesian(parts) - T).abs().max().item(),
}

# --- 2. equivariance under O(3) ----------------------------------------------------------
irreps = Irreps("0e + 1e + 2e")
assert str(irreps) == str(ct)
g = rand_matrix(8, dtype=dtype)
g[1::2] *= -1  # every other element improper (rotation × inversion)
D = irreps.D_from_matrix(g)  # [8, 9, 9], block diagonal D^0 ⊕ D^1 ⊕ D^2 with parities

a_g = torch.einsum("gij,zj->gzi", g, a)
b_g = torch.einsum("gij,zj->gzi", g, b)
parts_g = ct.from_vectors(a_g, b_g)  # parts of the transformed inputs   [8, n, 9]
D_parts = torch.einsum("gij,zj->gzi", D, parts)  # transformed parts of the inputs [8, n, 9]
for l, sl in zip(range(3), irreps.slices()):
    errors[f"l={l}: part(g·a, g·b) vs D^{l}(g) part(a, b)"] = (
        (parts_g[..., sl] - D_parts[..., sl]).abs().max().item()
    )

# the 1e part is a pseudovector: under the inversion it does NOT change sign, unlike a and b
errors["1e part invariant under inversion"] = (
    (ct.from_vectors(-a, -b)[:, 1:4] - parts[:, 1:4]).abs().max().item()
)
errors["1e part vs 1o rule (should be large)"] = (
    (ct.from_vectors(-a, -b)[:, 1:4] + parts[:, 1:4]).abs().max().item()
)

print(f"{'check':<52} max |error|")
ok = True
for name, error in errors.items():
    expected_large = "should be large" in name
    passed = error > 1e-3 if expected_large else error < 1e-12
    ok &= passed
    print(f"{name:<52} {error:.2e}  {'ok' if passed else 'FAIL'}")
print("all checks passed" if ok else "SOME CHECKS FAILED")
raise SystemExit(0 if ok else 1)
