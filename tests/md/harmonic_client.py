"""An i-PI force client for the tests: every atom tied to its starting position by a spring,
E = Σ_i ½ k |r_i − r_i⁰|². Optionally it kills itself (SIGKILL) after some evaluations.

Usage: python harmonic_client.py STRUCTURE --address ADDRESS [--spring K] [--die-after N]
"""

import argparse
import os
import signal

import ase.io
from ase.calculators.calculator import Calculator, all_changes

from euclidnn.md.serve import Address, serve


class Harmonic(Calculator):
    implemented_properties = ["energy", "forces"]

    def __init__(self, centres, spring, die_after=None):
        super().__init__()
        self.centres, self.spring, self.die_after, self.calls = centres, spring, die_after, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        displacement = self.atoms.positions - self.centres
        self.results = {
            "energy": 0.5 * self.spring * (displacement**2).sum(),
            "forces": -self.spring * displacement,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("structure")
    parser.add_argument("--address", required=True)
    parser.add_argument("--spring", type=float, default=1.0, help="eV/Å²")
    parser.add_argument("--die-after", type=int, default=None)
    args = parser.parse_args()
    atoms = ase.io.read(args.structure)
    calculator = Harmonic(atoms.positions.copy(), args.spring, args.die_after)
    serve(atoms, calculator, Address.parse(args.address))
