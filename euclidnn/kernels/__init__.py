"""Everything native: the C kernels, their build and cache, the checks at the boundary, and the
choice between a fused kernel and the PyTorch reference.

``o3``, ``nn`` and ``models`` own the mathematics and its plain PyTorch form (the reference);
they call the functions here, passing that reference, and get the fused result where the
kernel can run (:func:`fused_library`: CPU, float32/float64, not under ``torch.compile`` or
``torch.jit.trace``, ``EUCLIDNN_NATIVE`` not ``"0"``, a C compiler present) and the
reference's elsewhere. A trace inside :func:`recording_ops` records the convolution kernel as
the TorchScript custom op ``euclidnn::uvu_conv`` (:mod:`euclidnn.kernels.ops`) instead. Every argument is checked before a pointer is taken: dtype, device,
shape, contiguity (a contiguous copy is kept alive until the call returns), index dtype (int32
converted, others a ``TypeError``) and index ranges (``IndexError``), so that no input can
crash the process.

Kernels:

- :func:`convolve`: the equivariant point convolution Σ_{e→i} TP_uvu(x_src, Y_e; w_e) of
  :meth:`euclidnn.o3.TensorProduct.convolve` (NequIP), any order of derivative;
- :func:`conv_partial`: one partial derivative of that convolution's quadrilinear form with no
  autograd node, for a hand-written backward (NequIP's inference path; ask
  :func:`fused_conv_available` first; recorded as ``euclidnn::uvu_conv`` at its slot by a trace
  inside :func:`recording_ops`: an exported NequIP's ``energy_forces``);
- :func:`row_products`: the same form with each row its own node and one shared weight row:
  the Clebsch–Gordan step of a tensor product with shared "uvw" weights (any order of
  derivative);
- :func:`filter_conv`: SchNet's continuous-filter convolution (any order of derivative);
- :func:`schnet_energy_and_forces`: a whole SchNet energy and force evaluation in one call
  (also the custom op ``euclidnn::schnet_energy_forces`` of exported SchNet files, with a
  per-atom weight on the energies it differentiates: :func:`euclidnn.kernels.schnet.schnet_op`).

:class:`Edges` is an edge list checked once and grouped by destination, source and filter row;
prepare one per graph (:meth:`euclidnn.data.Graph.derived`) and pass it to every layer.
``EUCLIDNN_NATIVE=0`` turns every kernel off (CI runs the model, nn and o3 tests that way too),
``EUCLIDNN_CACHE`` sets where the built libraries go (default ``~/.cache/euclidnn``).
"""

from euclidnn.kernels import ops
from euclidnn.kernels.build import Library, cache_directory, check_private, target_flags
from euclidnn.kernels.checks import fused_library, native_enabled, recording_ops
from euclidnn.kernels.conv import (
    ConvSpec,
    conv_partial,
    convolve,
    filter_conv,
    fused_conv_available,
    row_products,
)
from euclidnn.kernels.edges import Edges
from euclidnn.kernels.schnet import (
    SchNetWeights,
    schnet_energy_and_forces,
    schnet_kernel_available,
)

__all__ = [
    "ConvSpec",
    "Edges",
    "Library",
    "SchNetWeights",
    "cache_directory",
    "check_private",
    "conv_partial",
    "convolve",
    "filter_conv",
    "fused_conv_available",
    "fused_library",
    "native_enabled",
    "ops",
    "recording_ops",
    "row_products",
    "schnet_energy_and_forces",
    "schnet_kernel_available",
    "target_flags",
]
