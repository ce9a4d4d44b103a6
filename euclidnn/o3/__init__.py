"""Geometric tensors of O(3): irreps, rotations, Wigner matrices, spherical harmonics."""

from .irreps import Irrep, Irreps, MulIrrep
from .rotations import (
    angles_to_axis_angle,
    angles_to_matrix,
    angles_to_quaternion,
    angles_to_xyz,
    axis_angle_to_angles,
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    compose_angles,
    compose_quaternion,
    identity_angles,
    inverse_angles,
    inverse_quaternion,
    matrix_to_angles,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_x,
    matrix_y,
    matrix_z,
    quaternion_to_angles,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rand_angles,
    rand_axis_angle,
    rand_matrix,
    rand_quaternion,
    xyz_to_angles,
)
from .spherical_harmonics import spherical_harmonics
from .wigner import clebsch_gordan, wigner_3j, wigner_D, wigner_D_from_matrix
from .cartesian import CartesianTensor, ReducedTensorProducts
from .linear import Linear
from .tensor_product import (
    Path,
    Paths,
    TensorProduct,
    elementwise_paths,
    fully_connected_paths,
    instruction_paths,
    uvu_paths,
)
