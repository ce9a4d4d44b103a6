"""`euclidnn learn` end to end on a Cu cluster with EMT (two iterations, the folder it writes,
`evaluate --committee` on it), and bad input: one line on stderr naming the option or file,
exit status 2, nothing left behind."""

import json

import ase.io
import pytest
from ase import Atoms
from learn_helpers import TINY, cluster

from euclidnn.cli.__main__ import main

FAST = [
    "--committee", "2", "--max-epochs", "4", "--seed-frames", "6", "--max-labels", "30",
    "--first-explore-steps", "40", "--explore-steps", "80", "--max-selected", "3",
    "--max-iterations", "2", "--sigma-low", "0.01", "--sigma-high", "5",
]  # fmt: skip


@pytest.fixture
def files(tmp_path):
    import yaml

    ase.io.write(tmp_path / "cu13.xyz", cluster())
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return tmp_path


def _learn(files, *extra, out="run"):
    return main(
        ["learn", str(files / "cu13.xyz"), "--label", "emt", "--temperature", "600"]
        + ["--config", str(files / "tiny.yaml"), "--out", str(files / out), *FAST, *extra]
    )


def test_learn_runs_two_iterations_and_evaluate_reads_its_committee(files, capsys):
    assert _learn(files) == 0
    out = files / "run"
    printed = capsys.readouterr().out
    assert "iteration 0:" in printed and "stopped: max_iterations" in printed
    for name in ("labels.xyz", "log.csv", "state.json", "report/stability.png"):
        assert (out / name).is_file(), name
    assert (out / "iteration-001/committee/member-1/model.safetensors").is_file()
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("iteration,labels")

    committee = str(out / "iteration-001/committee")
    report = files / "report"
    status = main(
        ["evaluate", "--committee", committee, str(out / "labels.xyz"), "--plots", str(report)]
        + ["--json", str(files / "committee.json")]
    )
    assert status == 0
    values = json.loads((files / "committee.json").read_text())
    assert values["members"] == 2 and -1 <= values["spearman_sigma_forces"] <= 1
    assert len(values["frames"]["sigma_forces"]) == len(ase.io.read(out / "labels.xyz", ":"))
    assert (report / "calibration.png").is_file()

    labels = len(ase.io.read(out / "labels.xyz", ":"))
    assert _learn(files, "--resume") == 0  # a finished run: nothing more to do
    assert "stopped: max_iterations" in capsys.readouterr().out
    assert len(ase.io.read(out / "labels.xyz", ":")) == labels
    assert _learn(files, "--resume", "--max-iterations", "3") == 0  # a larger budget: goes on
    assert "iteration 2: training" in capsys.readouterr().out
    assert (out / "iteration-002/committee/member-1/model.safetensors").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "b3lyp-nonsense"], "--label b3lyp-nonsense: unknown method"),
        (["--max-labels", "0"], "--max-labels 0: the label budget must be ≥ 1"),
        (["--minutes", "0"], "--minutes 0.0: the time budget must be > 0"),
        (["--committee", "1"], "--committee 1: a committee needs ≥ 2 models"),
        (["--sigma-low", "0.5", "--sigma-high", "0.5"], "--sigma-low 0.5 must be ≥ 0 and below"),
        (["--resume"], "nothing to resume"),
        (["--resume", "--overwrite"], "--resume and --overwrite"),
        (["--temperature", "-5"], "--temperature: temperatures must be > 0 K"),
    ],
)
def test_bad_options_name_the_option(files, capsys, args, message):
    base = ["learn", str(files / "cu13.xyz"), "--label", "emt", "--temperature", "600"]
    status = main(base + ["--out", str(files / "new")] + args)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("euclidnn learn: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (files / "new").exists()


def test_an_element_the_reference_cannot_treat(files, capsys):
    ase.io.write(files / "uranium.xyz", Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.5]]))
    status = main(
        ["learn", str(files / "uranium.xyz"), "--label", "gfn2-xtb", "--temperature", "300"]
        + ["--out", str(files / "u")]
    )
    err = capsys.readouterr().err
    assert status == 2 and "uranium.xyz: element U cannot be labelled with GFN2-xTB" in err
    assert not (files / "u").exists()

    ase.io.write(files / "li.xyz", Atoms("Li2", positions=[[0, 0, 0], [0, 0, 2.7]]))
    assert _learn_with(files, "li.xyz", "li") == 2
    err = capsys.readouterr().err
    assert "li.xyz: the reference EMT cannot label it" in err and len(err.splitlines()) == 1
    assert not (files / "li").exists()  # failed before its first step: nothing left


def _learn_with(files, structure, out):
    return main(
        ["learn", str(files / structure), "--label", "emt", "--temperature", "300"]
        + ["--config", str(files / "tiny.yaml"), "--out", str(files / out), *FAST]
    )


def test_an_existing_out_needs_overwrite_or_resume(files, capsys):
    (files / "taken").mkdir()
    (files / "taken" / "something").write_text("x")
    status = _learn(files, out="taken")
    err = capsys.readouterr().err
    assert status == 2 and "--out" in err and "use --overwrite" in err
    assert (files / "taken" / "something").read_text() == "x"
