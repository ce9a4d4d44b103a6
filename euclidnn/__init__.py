"""euclidnn: E(3)-equivariant neural networks and machine-learned interatomic potentials."""

__version__ = "0.1.0"
