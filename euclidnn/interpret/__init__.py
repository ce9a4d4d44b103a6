"""What a trained model learned: element embeddings (PCA, by periodic group) and the local
chemical potential Ω_Z(r) of a probe atom that receives messages but sends none."""

from .embeddings import (
    EmbeddingPCA,
    embedding_pca,
    periodic_group,
    periodic_period,
    plot_embedding_pca,
    species_embeddings,
    write_embedding_pca,
)
from .potential_maps import PotentialMap, plot_potential_map, potential_map, write_potential_map
from .probe import (
    drop_outgoing_edges,
    isosurface_points,
    local_chemical_potential,
    plane_points,
    probe_graph,
)

__all__ = [
    "EmbeddingPCA",
    "PotentialMap",
    "drop_outgoing_edges",
    "embedding_pca",
    "isosurface_points",
    "local_chemical_potential",
    "periodic_group",
    "periodic_period",
    "plane_points",
    "plot_embedding_pca",
    "plot_potential_map",
    "potential_map",
    "probe_graph",
    "species_embeddings",
    "write_embedding_pca",
    "write_potential_map",
]
