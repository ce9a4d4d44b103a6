import numpy as np
import pytest
from ase import units

from euclidnn.units import convert, unit_factor


@pytest.mark.parametrize(
    "name, expected",
    [
        ("eV", 1.0),
        ("Hartree", units.Hartree),
        ("Ha", units.Hartree),
        ("kcal/mol", units.kcal / units.mol),
        ("kJ/mol", units.kJ / units.mol),
        ("Bohr", units.Bohr),
        ("nm", units.nm),
        ("Hartree/Bohr", units.Hartree / units.Bohr),
        ("kcal/mol/Å", units.kcal / units.mol),
        ("eV/Ang/Ang/Ang", 1.0),
        ("eV/Å^3", 1.0),
        ("Ha/a0**3", units.Hartree / units.Bohr**3),
        ("a0^3", units.Bohr**3),
        ("D", units.Debye),
        ("ps", 1000.0),
        ("s", 1e15),
        ("GHz", 1e-6),
        ("", 1.0),
    ],
)
def test_factors_from_ase_units(name, expected):
    assert unit_factor(name) == pytest.approx(expected, rel=1e-12)


def test_convert_arrays_and_inverse():
    x = np.array([1.0, -2.0])
    y = convert(x, "kcal/mol", "kJ/mol")
    np.testing.assert_allclose(y, x * 4.184, rtol=1e-12)
    np.testing.assert_allclose(convert(y, "kJ/mol", "kcal/mol"), x, rtol=1e-12)
    assert convert(1.0, "Hartree") == pytest.approx(units.Hartree)


def test_errors():
    with pytest.raises(ValueError, match="different dimensions"):
        convert(1.0, "eV/Å", "eV")
    with pytest.raises(ValueError, match="unknown unit 'furlong'"):
        unit_factor("furlong/fs")
