"""The reference data sets shipped with euclidnn, made by ``euclidnn label`` (see
``euclidnn/data/shipped/README.md`` for the exact command of each).

``load_dataset("ethanol")`` returns the structures in eV and Å, one call, no download.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .structure import Structure

__all__ = ["DatasetInfo", "DATASETS", "list_datasets", "dataset_info", "load_dataset"]

SHIPPED_DIR = Path(__file__).parent / "shipped"


@dataclass(frozen=True)
class DatasetInfo:
    """One shipped data set.

    Args:
        name: what :func:`load_dataset` takes.
        filename: file under ``euclidnn/data/shipped/`` (extxyz, possibly gzipped).
        level_of_theory: of the energy and force labels.
        num_frames: frames in the finished set.
        description: how the configurations were sampled.
    """

    name: str
    filename: str
    level_of_theory: str
    num_frames: int
    description: str

    @property
    def path(self) -> Path:
        return SHIPPED_DIR / self.filename


_MD17_XTB = "Langevin MD at 500 K (GFN2-xTB, 0.5 fs, every 10th step after 1000), seed 0"
_MD17 = (
    "ethanol",
    "malonaldehyde",
    "benzene",
    "toluene",
    "uracil",
    "naphthalene",
    "salicylic_acid",
    "aspirin",
)

#: All shipped sets by name; :func:`list_datasets` lists those present in this installation.
DATASETS: dict[str, DatasetInfo] = {
    name: DatasetInfo(
        name, f"{name}-gfn2xtb.xyz.gz", "GFN2-xTB", 2000 if name == "ethanol" else 1000, _MD17_XTB
    )
    for name in _MD17
}
DATASETS["ethanol-pbe"] = DatasetInfo(
    "ethanol-pbe",
    "ethanol-pbe-def2svp.xyz",
    "PBE/def2-svp",
    500,
    "Langevin MD at 500 K (GFN2-xTB, 0.5 fs, every 10th step after 1000), seed 0; "
    "labelled with PySCF PBE/def2-SVP, density fitting",
)

DATASETS["many-elements"] = DatasetInfo(
    "many-elements",
    "many-elements-gfn2xtb.xyz.gz",
    "GFN2-xTB",
    3080,
    "29 main-group elements: ASE g2 molecules (closed shell, 2-10 atoms) and element-substituted "
    "variants, relaxed with GFN2-xTB, Langevin MD at 500 K (0.5 fs, every 10th step after 200), "
    "20 frames each, seed 0 (examples/element_embeddings/make_dataset.py)",
)


def list_datasets() -> list[str]:
    """Names of the shipped data sets whose file is present and has frames.

    >>> "ethanol" in list_datasets()
    True
    """
    return [
        name
        for name, info in DATASETS.items()
        if info.path.is_file() and info.path.stat().st_size > 0
    ]


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a shipped set; ValueError naming the known sets.

    >>> info = dataset_info("aspirin")
    >>> info.level_of_theory, info.num_frames, info.filename
    ('GFN2-xTB', 1000, 'aspirin-gfn2xtb.xyz.gz')
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; shipped: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str) -> list[Structure]:
    """Load a shipped data set as structures in eV and Å (energies, forces labelled).

    A set still being made (the DFT run is resumable) loads with the frames done so far.

    >>> structures = load_dataset("ethanol")  # doctest: +SKIP
    >>> len(structures), structures[0].num_atoms, structures[0].forces.shape  # doctest: +SKIP
    (2000, 9, (9, 3))
    """
    from .readers import read

    info = dataset_info(name)
    if not info.path.is_file():
        raise FileNotFoundError(f"{info.path}: data set {name!r} is not in this installation")
    if info.path.suffix != ".gz":
        return read(info.path)
    # ase.io seeks back and forth in a gzip stream (quadratic in the frame count): read an
    # uncompressed copy instead, and name the shipped file in errors
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / info.path.stem
        with gzip.open(info.path) as source, open(plain, "wb") as target:
            shutil.copyfileobj(source, target)
        try:
            return read(plain)
        except ValueError as error:
            raise ValueError(str(error).replace(str(plain), str(info.path))) from None
