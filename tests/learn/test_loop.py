"""The loop on a Cu cluster with EMT as the reference: its folder after every step, and a killed
run that resumes without labelling any frame twice (killed between labelling and training, and
killed while labelling)."""

import json

import ase.io
import pytest
from learn_helpers import CountingEMT, cluster, make_model, small_loop, train_config

import euclidnn.learn.loop as loop
from euclidnn.learn import learn
from euclidnn.learn.labelling import KEY, frame_key


def _run(out, reference, **changes):
    return learn(
        [cluster()],
        reference,
        small_loop(**changes),
        train_config(),
        make_model,
        out,
        log=lambda _: None,
    )


def _labels(out):
    return ase.io.read(out / "labels.xyz", index=":")


def test_two_iterations_write_the_folder_layout(tmp_path):
    reference = CountingEMT()
    result = _run(tmp_path, reference, max_iterations=2)
    assert result.stop_reason == "max_iterations"
    frames = _labels(tmp_path)
    assert reference.calls == len(frames) == result.labels > 6
    assert len({f.info[KEY] for f in frames}) == len(frames)
    assert all(f.info[KEY] == frame_key(f) for f in frames)
    for name in ("state.json", "log.csv", "report/labels.png", "report/sigma.png"):
        assert (tmp_path / name).is_file(), name
    first = tmp_path / "iteration-000"
    for name in ("exploration.json", "selection.xyz", "summary.json"):
        assert (first / name).is_file(), name
    assert (first / "committee/member-1/model.safetensors").is_file()
    assert len(result.committee) == 2 and "iteration-001" in str(result.committee[0])
    summary = json.loads((first / "summary.json").read_text())
    assert summary["selected"] <= 3 and summary["labels"] == 6
    exploration = json.loads((first / "exploration.json").read_text())["trajectories"]
    assert len(exploration[0]["sigmas"]) == 40  # first_explore_steps
    assert json.loads((tmp_path / "state.json").read_text())["state"]["step"] == "done"


def test_a_run_killed_between_labelling_and_training_resumes_without_relabelling(
    tmp_path, monkeypatch
):
    real = loop.train_committee
    trainings = []

    def killed_at_the_second_training(*args, **kwargs):
        trainings.append(1)
        if len(trainings) == 2:
            raise KeyboardInterrupt("killed before training iteration 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_committee", killed_at_the_second_training)
    first = CountingEMT()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, first)
    state = json.loads((tmp_path / "state.json").read_text())["state"]
    assert (state["iteration"], state["step"]) == (1, "labelled")
    assert (tmp_path / "log.csv").read_text().splitlines()[1].startswith("0,6,40,")
    labelled = len(_labels(tmp_path))
    assert first.calls == labelled > 6

    monkeypatch.setattr(loop, "train_committee", real)
    second = CountingEMT()
    result = _run(tmp_path, second)
    frames = _labels(tmp_path)
    assert second.calls == len(frames) - labelled  # only frames selected after the resume
    assert len({f.info[KEY] for f in frames}) == len(frames) == result.labels
    assert [f.info["learn_iteration"] for f in frames[:labelled]] == [
        f.info["learn_iteration"] for f in _labels(tmp_path)[:labelled]
    ]


def test_a_run_killed_while_labelling_labels_only_the_rest(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, CountingEMT(stop_after=7), max_iterations=2)  # 6 seed + 1 selected
    assert len(_labels(tmp_path)) == 7
    state = json.loads((tmp_path / "state.json").read_text())["state"]
    assert (state["iteration"], state["step"]) == (0, "explored")
    selected = ase.io.read(tmp_path / "iteration-000/selection.xyz", index=":")
    resumed = CountingEMT()
    _run(tmp_path, resumed, max_iterations=2)
    assert resumed.calls == len(selected) - 1
    frames = _labels(tmp_path)
    assert len({f.info[KEY] for f in frames}) == len(frames) == 6 + len(selected)
