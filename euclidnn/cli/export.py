"""Write a model as one TorchScript file that C++ runs without Python (LAMMPS ``pair_style
euclidnn``): per-atom energies from positions, atomic numbers and a full edge list; forces by
autograd. The file's contract is in euclidnn/export/torchscript.py.

Examples:
  euclidnn export runs/eth/model.safetensors --out eth.pt
  euclidnn export model.safetensors --out model32.pt --dtype float32 --overwrite
  euclidnn export model.safetensors --out plain.pt --portable

By default the file calls euclidnn's fused convolution kernel (NequIP, SchNet) as the custom op
euclidnn::uvu_conv, and SchNet's whole-model kernel as euclidnn::schnet_energy_forces; all
three models' files get forces without autograd (the method energy_forces; NequIP's and
Allegro's traced from their hand-written derivatives), which the LAMMPS plugin (`euclidnn
lammps build`) and `import euclidnn.export` provide; --portable writes a file that stock
libtorch runs on its own (the plain PyTorch operations and autograd: several times slower for
NequIP).

The output path is checked before the model loads; an existing file is replaced only with
--overwrite. The export is checked against the model on clusters of other sizes before it is
written.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``euclidnn export``."""
    parser.add_argument("model", help="a model file (model.safetensors of a run)")
    parser.add_argument("--out", required=True, help="the TorchScript file to write, e.g. model.pt")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="floating-point type of the exported weights and inputs (default: the model's)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--portable",
        action="store_true",
        help="no euclidnn custom ops in the file: stock libtorch runs it (slower)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``euclidnn export``: output checked, model loaded, exported; one line printed."""
    import torch

    from euclidnn.cli.config_io import check_output, refuse_existing
    from euclidnn.export import export
    from euclidnn.models import load_model

    check_output(args.out, "--out", folder=False)
    refuse_existing([args.out], "--out", args.overwrite)
    model = load_model(args.model)
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(args.dtype)
    metadata = export(model, args.out, dtype=dtype, portable=args.portable)
    ops = ", ".join(metadata["ops"]) or "none"
    print(
        f"{args.out}: {metadata['model']} for {'+'.join(metadata['symbols'])}, "
        f"cutoff {metadata['cutoff']:g} Å, receptive field {metadata['receptive_field']:g} Å "
        f"({metadata['num_hops']} hops), {metadata['dtype']}, custom ops: {ops}"
    )
    return 0
