#!/usr/bin/env bash
# Reference data of the lithium phosphate study (issue 20): a 52-atom Li4P2O7 cell (4 formula
# units: the smallest cell whose side, 8.35 Å, exceeds 1.5 × r_max = 7.5 Å) at 2.3 g/cm³,
# labelled by periodic GFN1-xTB (tblite, Γ point, Ewald; energies, forces, stress) from the
# reference method's own Langevin MD:
#   melt:   2000 K, 40 frames 20 steps (20 fs) apart after 200 steps of equilibration;
#   quench: from the melt's last frame, 1000 K → 600 K → 300 K, 15 frames each, 20 steps apart,
#           each stage starting from the previous stage's last frame.
# GFN2-xTB's SCF does not converge on this cell; GFN1-xTB takes about 2 s per step on 1 core.
# Each stage is one `euclidnn label` run: rerunning this script resumes where it stopped.
# MELT_FRAMES=1000 ./make_data.sh labels a longer melt for the study's larger training sets
# (about 2 s per MD step on one core: 1000 frames 20 steps apart are 11 CPU-hours).
# The cell: python build_cell.py (random packing of P2O7 units and Li) relaxed 25 FIRE steps
# with GFN1-xTB (fmax 0.46 eV/Å) → li4p2o7_52.xyz.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-data}
mkdir -p "$OUT"
label() { euclidnn label "$@" --method gfn1-xtb --interval 20 --seed 0 --quiet; }
last_frame() {  # the last frame of $1 as a structure file $2 (cell, pbc, positions only)
    python -c "import ase.io, sys; a = ase.io.read(sys.argv[1], -1); a.calc = None; a.info = {}; \
a.arrays = {k: v for k, v in a.arrays.items() if k in ('numbers', 'positions')}; ase.io.write(sys.argv[2], a)" "$1" "$2"
}
label li4p2o7_52.xyz -o "$OUT/melt_2000K.xyz" -n "${MELT_FRAMES:-40}" --temperature 2000
previous="$OUT/melt_2000K.xyz"
for T in 1000 600 300; do
    last_frame "$previous" "$OUT/start_${T}K.xyz"
    label "$OUT/start_${T}K.xyz" -o "$OUT/quench_${T}K.xyz" -n 15 --temperature "$T"
    previous="$OUT/quench_${T}K.xyz"
done
