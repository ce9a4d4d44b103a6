#!/usr/bin/env bash
# The lithium phosphate study of issue 20 in one command, on the reference data of
# make_data.sh (default: the shipped 85 frames). Every step is a euclidnn command:
#   1. force MAE vs training-set size, trained on melt frames only, tested on held-out melt
#      frames and on every quench stage (learning-curve --test);
#   2. the model's own melt → quench MD on the reference's protocol (NVT 2000 K, then 1000,
#      600, 300 K, each stage from the last frame of the one before, with its cell; NPT at
#      PRESSURE for the quench when it is set), and its P–O–P / O–P–O
#      angles and Li–O / P–O g(r) beside the reference method's frames (analyze);
#   3. Li diffusion: the model's NVT at each of TEMPS (MSD, D with block error bars, Arrhenius
#      E_a), beside the reference method's own MD at 2000 K;
#   4. seconds per force call, the model against the reference method (speed.json).
# Settings (environment): DATA (labelled frames, one file), OUT (study), SIZES (training-set
# sizes, at most the melt frames less N_TEST + N_VALID), MINUTES (per fit), MODEL (nequip,
# allegro, schnet), STAGE_STEPS and DIFFUSION_STEPS (MD steps of 1 fs), TEMPS, ENGINE (ase or
# lammps), RANKS (lammps), PRESSURE (GPa: the quench stages at constant pressure, NPT, to find
# the glass's density — the reference's 52-atom cell carries ~4 GPa; default empty: NVT in the
# reference's cell, its own protocol, so the angles and g(r) compare like with like). Results: OUT/curve/learning_curve.png, OUT/structure_*/*.png,
# OUT/diffusion/msd_species.png and each folder's JSON. A step whose output exists is skipped,
# so a stopped study resumes at the step it was in (rm -r that step's folder first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
DATA=${DATA:-$here/li4p2o7-gfn1xtb.xyz.gz}
OUT=${OUT:-study}
SIZES=${SIZES:-7,14,28}
N_TEST=${N_TEST:-8}
N_VALID=${N_VALID:-4}
MINUTES=${MINUTES:-3}
MODEL=${MODEL:-nequip}
STAGE_STEPS=${STAGE_STEPS:-2000}
DIFFUSION_STEPS=${DIFFUSION_STEPS:-10000}
TEMPS=${TEMPS:-1200 1600 2000}
ENGINE=${ENGINE:-ase}
RANKS=${RANKS:-1}
PRESSURE=${PRESSURE:-}
mkdir -p "$OUT/data" "$OUT/md"

# 0. the reference's MD runs in DATA: the hottest is the melt, the others the quench stages
python - "$DATA" "$OUT/data" <<'PY'
import sys
from pathlib import Path

import ase.io

from euclidnn.md.analysis import read_reference

runs = read_reference(sys.argv[1])
melt = max(runs, key=lambda run: run.temperature_K)
out = Path(sys.argv[2])
ase.io.write(out / "melt.xyz", melt.frames)
start = melt.frames[0].copy()
start.calc, start.info = None, {}
ase.io.write(out / "start.xyz", start)
for run in runs:
    if run is not melt:
        ase.io.write(out / f"quench_{run.temperature_K:g}K.xyz", run.frames)
print(f"{sys.argv[1]}: melt {len(melt.frames)} frames at {melt.temperature_K:g} K; quench "
      + ", ".join(f"{len(r.frames)} at {r.temperature_K:g} K" for r in runs if r is not melt))
PY
quench=$(ls "$OUT"/data/quench_*K.xyz | sort -t_ -k2 -rn | paste -sd, -)

# 1. force MAE vs N on melt frames; tested on held-out melt frames and on each quench stage
largest=${SIZES##*,}
if [ ! -f "$OUT/curve/learning_curve.json" ]; then
    euclidnn learning-curve "$OUT/data/melt.xyz" --models "$MODEL" --sizes "$SIZES" \
        --n-test "$N_TEST" --n-valid "$N_VALID" --test "$quench" --minutes-per-fit "$MINUTES" \
        --out "$OUT/curve" --overwrite
fi
model="$OUT/curve/$MODEL-N$largest/model.safetensors"

md() {  # md OUT_NAME STRUCTURE TEMPERATURE STEPS [ENSEMBLE…]: the model's MD (default NVT,
        # Bussi), skipped when done
    [ -f "$OUT/md/$1/summary.json" ] && return 0
    local name=$1 structure=$2 temperature=$3 steps=$4
    shift 4
    [ $# -gt 0 ] || set -- --ensemble nvt --thermostat bussi
    euclidnn md "$model" "$structure" "$@" --temperature "$temperature" \
        --timestep 1.0 --steps "$steps" --trajectory-interval 20 --log-interval 100 --seed 0 \
        --engine "$ENGINE" --ranks "$RANKS" --out "$OUT/md/$name" --overwrite --quiet
}
quench_ensemble=(--ensemble nvt --thermostat bussi)
if [ -n "$PRESSURE" ]; then
    quench_ensemble=(--ensemble npt --pressure "$PRESSURE")
fi
last_frame() {  # the last frame of run $1 as a structure file $2 (positions and cell only)
    python -c "import ase.io, sys; a = ase.io.read(sys.argv[1], -1); \
ase.io.write(sys.argv[2], ase.Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc))" \
        "$OUT/md/$1/trajectory.xyz" "$2"
}

# 2. melt → quench with the model, on the reference's protocol
md melt_2000K "$OUT/data/start.xyz" 2000 "$STAGE_STEPS"
previous=melt_2000K
for T in 1000 600 300; do
    last_frame "$previous" "$OUT/data/start_${T}K.xyz"
    md "quench_${T}K" "$OUT/data/start_${T}K.xyz" "$T" "$STAGE_STEPS" "${quench_ensemble[@]}"
    previous="quench_${T}K"
done
for stage in melt_2000K:melt quench_300K:quench_300K; do  # the model's run beside the reference's
    euclidnn analyze "$OUT/md/${stage%%:*}" "$OUT/data/${stage##*:}.xyz" --skip 0.2 \
        --angles P-O-P:1.9,O-P-O:1.9 --pairs Li-O,P-O --out "$OUT/structure_${stage%%:*}" --overwrite
done

# 3. Li diffusion: the model at each temperature (Arrhenius), the reference at the melt's
for T in $TEMPS; do
    md "diffusion_${T}K" "$OUT/data/start.xyz" "$T" "$DIFFUSION_STEPS"
done
euclidnn analyze $(for T in $TEMPS; do echo "$OUT/md/diffusion_${T}K"; done) \
    "$OUT/data/melt.xyz" --diffusion Li --blocks 5 --skip 0.1 --out "$OUT/diffusion" --overwrite
# 4. time per force call on the melt's first frame, one thread each: the model through our ASE
#    calculator against the reference method as `euclidnn label` runs it (GFN1-xTB with the cell)
if [ ! -f "$OUT/speed.json" ]; then
python - "$model" "$OUT/data/start.xyz" "$OUT/speed.json" <<'PY'
import json
import statistics
import sys
import time

import ase.io
import torch

from euclidnn.data.label import Level, make_labeller
from euclidnn.md import Calculator
from euclidnn.models import load_model

torch.set_num_threads(1)
atoms = ase.io.read(sys.argv[2])


def seconds(call, repeats: int) -> float:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


model = atoms.copy()
model.calc = Calculator(load_model(sys.argv[1]))


def model_call():
    model.positions += 1e-4  # a new geometry each call (the calculator keeps its edges)
    model.get_forces()


reference = make_labeller(Level("gfn1-xtb"), xtb_threads=1)
table = {"atoms": len(atoms), "model_s_per_call": seconds(model_call, 50),
         "gfn1_xtb_s_per_call": seconds(lambda: reference(atoms), 3)}
table["speedup"] = table["gfn1_xtb_s_per_call"] / table["model_s_per_call"]
open(sys.argv[3], "w").write(json.dumps(table, indent=2) + "\n")
print(f"per force call, {len(atoms)} atoms, 1 thread: model {table['model_s_per_call'] * 1e3:.1f} ms, "
      f"GFN1-xTB {table['gfn1_xtb_s_per_call']:.2f} s: {table['speedup']:.0f}x")
PY
fi
echo "study: $OUT/curve/learning_curve.png $OUT/structure_melt_2000K $OUT/structure_quench_300K $OUT/diffusion $OUT/speed.json"
