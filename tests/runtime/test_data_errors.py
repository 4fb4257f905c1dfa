"""Bad data is a clear error naming the file and row; data paths stay inside the spec's
directory; summary.json and metrics.jsonl are strict JSON (issue #11)."""

import json
import math

import numpy as np
import pytest

from graphc.runtime import DataError, build_data, evaluate, train

from .toymodels import MLP


def _mlp(data, **cfg):
    return MLP(hidden=8, train={"data": data, "batch": 8, "steps": 3, "eval_every": 0, **cfg})


def _csv(path, rows, header="a,b,label"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def _strict(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("bad,line", [("5", 9), ("-1", 9), ("2", 9)])
def test_csv_label_outside_the_classes_names_file_and_line(tmp_path, bad, line):
    rows = [f"{i * 0.1},{i * 0.2},{i % 2}" for i in range(20)]
    rows[6] = f"0.5,0.5,{bad}"  # line 9: header, a blank line, then rows 0..6
    path = _csv(tmp_path / "d.csv", ["", *rows])
    with pytest.raises(DataError) as err:
        train(_mlp({"file": str(path), "val_fraction": 0}), out_dir=tmp_path / "r", progress="none")
    assert str(err.value).startswith(f"{path}:{line}: label {bad} (field `y`")
    assert "classes 0..1" in str(err.value) and "`logits` has 2 logits per label" in str(err.value)
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


def test_npz_label_outside_the_classes_in_the_validation_split(tmp_path):
    y = np.arange(40) % 2
    y[33] = 7
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 2), np.float32), y=y)
    model = _mlp({"file": str(tmp_path / "d.npz"), "val_fraction": 0.5})
    with pytest.raises(DataError, match=r"d.npz: row 33: label 7 \(field `y`, (training|validation)"):
        train(model, out_dir=tmp_path / "r", progress="none")
    with pytest.raises(DataError, match="row 33: label 7"):
        evaluate(model, model.init_params(0))


def test_labels_through_a_map_are_checked_too(tmp_path):
    np.savez(tmp_path / "d.npz", pts=np.zeros((10, 2), np.float32), cls=np.array([0, 1] * 4 + [3, 0]))
    data = {"file": str(tmp_path / "d.npz"), "map": {"x": "pts", "y": "cls"}, "val_fraction": 0}
    with pytest.raises(DataError, match=r"d.npz: row 8: label 3 \(field `cls`"):
        train(_mlp(data), out_dir=tmp_path / "r", progress="none")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-inf", " Infinity"])
def test_csv_nan_or_inf_cell_names_file_line_and_column(tmp_path, cell):
    path = _csv(tmp_path / "d.csv", ["1,2,0", f"3,{cell},1", "5,6,0"])
    with pytest.raises(DataError, match=rf"d.csv:3: column `b` value '{cell.strip()}' is not a finite"):
        build_data({"file": str(path)}, batch=2, seed=0)


def test_npz_nan_or_inf_names_array_and_row(tmp_path):
    x = np.zeros((10, 3), np.float32)
    x[4, 1] = np.inf
    x[6, 2] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(10, np.int64))
    with pytest.raises(DataError, match=r"d.npz: array `x` row 4 holds inf \(2 rows"):
        build_data({"file": str(tmp_path / "d.npz")}, batch=2, seed=0)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(10, np.int64))
    with pytest.raises(DataError, match="array `x` row 4 holds inf"):
        build_data({"file": {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}}, batch=2, seed=0)


def test_an_npy_header_declaring_more_than_the_file_holds_is_refused_before_loading(tmp_path):
    """np.load allocates what the header declares before reading: a 100-byte file claiming
    [10**11, 4] float32 was a MemoryError (reported as running out of memory), and a claim the
    machine could map would have been allocated."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32)) | {"shape": (10**11, 4)}
    with (tmp_path / "x.npy").open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(bytes(100))
    with pytest.raises(DataError, match=r"x.npy is truncated or corrupt: its header declares a float32 "
                                        r"array of shape \[100000000000, 4\] \(1.46 TiB\), but it holds 100 B"):
        build_data({"file": str(tmp_path / "x.npy")}, batch=2, seed=0)


def test_ragged_csv_rows_name_the_real_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n\n\n3,4,1\n5,6\n7,8,0\n")
    with pytest.raises(DataError, match=r"d.csv:6: 2 values, but the header has 3 \(a, b, label\)"):
        build_data({"file": str(path)}, batch=2, seed=0)
    path.write_text('a,b,label\n1,2,0\n"3,4,1\n')  # an unterminated quote swallows the rest
    with pytest.raises(DataError, match="d.csv:"):
        build_data({"file": str(path)}, batch=2, seed=0)


def test_a_kernel_that_rejects_a_batch_is_a_data_error(tmp_path):
    class Strict(MLP):
        def forward(self, params, batch, *, training, seed):
            if training:
                raise IndexError("cross_entropy: target class out of range")
            return super().forward(params, batch, training=training, seed=seed)

    model = Strict(hidden=4, train=_mlp({"task": "xor"}).train)
    with pytest.raises(DataError, match="step 1: the model cannot take a batch of task xor: cross"):
        train(model, out_dir=tmp_path / "r", progress="none")


def test_summary_and_metrics_are_strict_json_when_metrics_are_nan(tmp_path):
    class NanEval(MLP):
        def forward(self, params, batch, *, training, seed):
            result = super().forward(params, batch, training=training, seed=seed)
            if not training:
                result.losses["ce"] = float("nan")
            return result

    model = NanEval(hidden=4, train={**_mlp({"task": "xor"}).train, "eval_every": 2, "steps": 4})
    summary = train(model, out_dir=tmp_path / "r", progress="none")
    saved = _strict((tmp_path / "r" / "summary.json").read_text())
    assert saved["metrics"]["val_loss"] is None and summary["metrics"]["val_loss"] is None
    assert math.isfinite(saved["metrics"]["loss"])
    rows = [_strict(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r and r["val_loss"] is None for r in rows)
    _strict((tmp_path / "r" / "config.json").read_text())


# --- paths written in a spec stay inside its directory ---------------------------------------


@pytest.fixture
def spec_dir(tmp_path):
    """A spec directory with data inside it, and a file outside it."""
    spec = tmp_path / "project"
    (spec / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(40, 2)).astype(np.float32), "y": np.arange(40) % 2}
    np.savez(spec / "data" / "d.npz", **arrays)
    np.savez(tmp_path / "outside.npz", **arrays)
    (spec / "link.npz").symlink_to(tmp_path / "outside.npz")
    return spec


def _spec_model(spec_dir, file, **data):
    model = _mlp({"file": file, **data})
    model.spec_path = str(spec_dir / "toy.yaml")
    return model


def test_a_spec_path_resolves_next_to_the_spec(spec_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the spec's directory
    summary = train(_spec_model(spec_dir, "data/d.npz"), out_dir=tmp_path / "r", progress="none")
    assert summary["status"] == "completed"


@pytest.mark.parametrize(
    "file,how",
    [
        ("../outside.npz", "leads out of it"),
        ("data/../../outside.npz", "leads out of it"),
        ("link.npz", "is a symlink out of it"),
        ("ABS", "is an absolute path"),
        ("~/outside.npz", "is an absolute path"),
    ],
)
def test_a_spec_path_may_not_escape_the_spec_directory(spec_dir, tmp_path, file, how):
    file = str(tmp_path / "outside.npz") if file == "ABS" else file
    with pytest.raises(DataError) as err:
        train(_spec_model(spec_dir, file), out_dir=tmp_path / "r", progress="none")
    message = str(err.value)
    assert message.startswith(f"train.data.file: `{file}` {how}")
    assert f"inside the spec's directory ({spec_dir.resolve()})" in message
    assert "--set data.file=" in message


def test_val_file_and_file_mappings_are_confined_too(spec_dir, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    model = _spec_model(spec_dir, "data/d.npz", val_file="../outside.npz")
    with pytest.raises(DataError, match="train.data.val_file: `../outside.npz` leads out"):
        train(model, out_dir=tmp_path / "r", progress="none")
    model = _spec_model(spec_dir, {"x": "../x.npy", "y": "data/y.npy"})
    with pytest.raises(DataError, match=r"train.data.file.x: `../x.npy` leads out"):
        train(model, out_dir=tmp_path / "r", progress="none")


def test_paths_given_on_the_command_line_may_point_anywhere(spec_dir, tmp_path):
    model = _spec_model(spec_dir, "data/d.npz")
    for given in (str(tmp_path / "outside.npz"), "../outside.npz", "link.npz"):
        summary = train(
            model, out_dir=tmp_path / "r", progress="none", overrides={"data.file": given}
        )
        assert summary["status"] == "completed"
    assert evaluate(model, model.init_params(0), {"file": str(tmp_path / "outside.npz")})["samples"]
