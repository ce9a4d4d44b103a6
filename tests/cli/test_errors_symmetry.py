"""``euclidnn symmetry`` and ``interpret`` on what a careful new user tries (issue 19): an
empty file, a folder, a frame cut short, an ``--index`` beyond the file, NaN coordinates,
atoms on top of each other, a cutoff of 10⁶ Å, an ``--out`` that is a file — each refused with
one line naming the file, frame, option or atoms, a non-zero exit, no traceback (see
``test_errors_md`` for how the messages are looked for)."""

from __future__ import annotations

from pathlib import Path

import ase.io
import pytest
import torch
from ase.build import molecule
from marks import slow_beyond
from test_errors_md import assert_refused, euclidnn

from euclidnn.models import SchNet, SchNetConfig, save_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("errors_symmetry")
    (folder / "empty.xyz").write_text("")
    (folder / "a_folder").mkdir()
    ase.io.write(folder / "two.xyz", [molecule("CH4"), molecule("H2O")])
    text = (folder / "two.xyz").read_text()
    (folder / "cut.xyz").write_text("".join(text.splitlines(keepends=True)[:5]))  # 3 of 5 atoms
    (folder / "nan.xyz").write_text("3\n\nO 0 0 0\nH 0 0 nan\nH 0 1 0\n")
    (folder / "close.xyz").write_text("3\n\nO 0 0 0\nH 0 0 0.01\nH 0 1 0\n")
    (folder / "notes.txt").write_text("hello\nworld\n")
    (folder / "a_file").write_text("not a folder\n")
    torch.manual_seed(0)
    model = SchNet(SchNetConfig(species=(1, 6, 8), r_max=4.0, num_features=8, num_interactions=1))
    save_model(model, folder / "model.safetensors")
    return folder


SYMMETRY_CASES = {
    "empty file": (["empty.xyz"], ["empty.xyz: the file is empty"]),
    "cut frame": (["cut.xyz"], ["cut.xyz: frame 0 cannot be read", "Frame has 3 atoms"]),
    "index too large": (
        ["two.xyz", "--index", "2"],
        ["--index 2: two.xyz has 2 frame(s); give 0 … 1, or -1 for the last"],
    ),
    "index not a number": (["two.xyz", "--index", "last"], ["--index last: give a frame number"]),
    "not a structure": (["notes.txt"], ["notes.txt: frame 0 cannot be read", "not a structure"]),
    "NaN": (["nan.xyz"], ["nan.xyz frame 0: atom 1 (H) has NaN or infinite coordinates"]),
    "on top": (["close.xyz"], ["close.xyz frame 0: atoms 0 (O) and 1 (H) are 0.01 Å apart"]),
    "r-max 1e6": (
        ["CH4", "--plot-signal", "s.png", "--r-max", "1e6"],
        ["--r-max 1000000.0: must be a positive number of at most 50 Å"],
    ),
    "lmax 100": (["CH4", "--plot-signal", "s.png", "--lmax", "100"], ["--lmax 100: give 0 … 20"]),
    "symmetrize .foo": (["CH4", "--symmetrize", "out.foo"], ["--symmetrize out.foo: unknown"]),
}


@pytest.mark.parametrize("case", slow_beyond(SYMMETRY_CASES, 4))
def test_symmetry_refuses_with_one_line(folder, case):
    extra, messages = SYMMETRY_CASES[case]
    assert_refused(euclidnn("symmetry", *extra, cwd=folder), *messages)
    assert not (folder / "s.png").exists() and not (folder / "out.foo").exists()


def test_symmetry_on_a_folder(folder):
    result = euclidnn("symmetry", "a_folder", cwd=folder)
    assert_refused(result, "a_folder: is a folder; give a structure file")


def test_symmetry_reads_the_frame_asked_for(folder):
    result = euclidnn("symmetry", "two.xyz", "--index", "-1", cwd=folder)
    assert result.code == 0 and "point group C2v" in result.text, result.text


INTERPRET_CASES = {
    "embeddings --out file": ["embeddings", "model.safetensors", "--out", "a_file"],
    "potential --out file": [
        "potential",
        "model.safetensors",
        "H2O",
        "--probe",
        "C",
        "--out",
        "a_file",
    ],
    "threads 0": ["potential", "model.safetensors", "H2O", "--probe", "C", "--threads", "0"],
    "NaN": ["potential", "model.safetensors", "nan.xyz", "--probe", "C"],
    "spacing 0": [
        "potential",
        "model.safetensors",
        "H2O",
        "--probe",
        "C",
        "--plane",
        "--spacing",
        "0",
    ],
}
INTERPRET_MESSAGES = {
    "embeddings --out file": "--out a_file: a file is there",
    "potential --out file": "--out a_file: a file is there",
    "threads 0": "argument --threads: '0'",
    "NaN": "nan.xyz frame 0: atom 1 (H) has NaN",
    "spacing 0": "--spacing 0.0: give a grid spacing ≥ 0.01 Å",
}


@pytest.mark.parametrize("case", slow_beyond(INTERPRET_CASES, 3))
def test_interpret_refuses_with_one_line(folder, case):
    extra = INTERPRET_CASES[case]
    result = euclidnn("interpret", *extra, cwd=folder)
    assert_refused(result, INTERPRET_MESSAGES[case])
    assert not (folder / "interpret").exists()
    assert (folder / "a_file").read_text() == "not a folder\n"
