import gzip

import numpy as np
import pytest

from graphc.runtime.data import Feeder, build_data
from graphc.runtime.data.digits import load_digits_arrays
from graphc.runtime.errors import ConfigError, DataError

from .toymodels import TensorSpec


def _batches(bundle, k):
    return [bundle.train.next_batch() for _ in range(k)]


def _same(a, b):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


@pytest.mark.parametrize(
    "spec",
    [
        {"task": "reverse_digits", "length": 5},
        {"task": "majority"},
        {"task": "spirals"},
        {"dataset": "digits"},
    ],
)
def test_same_seed_same_batches_other_seed_other_batches(spec):
    a = _batches(build_data(spec, batch=16, seed=3), 4)
    b = _batches(build_data(spec, batch=16, seed=3), 4)
    c = _batches(build_data(spec, batch=16, seed=4), 4)
    assert _same(a, b)
    assert not _same(a, c)


@pytest.mark.parametrize(
    "spec",
    [
        {"task": "sort_digits", "length": 4},
        {"task": "xor", "train_size": 100},
        {"dataset": "digits"},
    ],
)
def test_stream_position_restores_exactly(spec):
    ref = build_data(spec, batch=32, seed=1)
    _batches(ref, 7)  # digits: 44 batches per epoch; xor: 3, so this crosses epochs
    state = ref.train.state_dict()
    expected = _batches(ref, 5)
    other = build_data(spec, batch=32, seed=1)
    other.train.load_state_dict(state)
    assert _same(expected, _batches(other, 5))


def test_epochs_cover_every_sample_once_in_a_new_order():
    bundle = build_data({"task": "xor", "train_size": 64, "val_size": 8}, batch=16, seed=0)
    data = bundle.train.data.fields["x"]
    epochs = [np.concatenate([b["x"] for b in _batches(bundle, 4)]) for _ in range(2)]
    for e in epochs:
        assert sorted(map(tuple, e)) == sorted(map(tuple, data))
    assert not np.array_equal(epochs[0], epochs[1])


@pytest.mark.parametrize(
    "task,solve",
    [
        ("reverse_digits", lambda d: d[::-1]),
        ("sort_digits", np.sort),
    ],
)
def test_digit_tasks_layout(task, solve):
    bundle = build_data({"task": task, "length": 6}, batch=8, seed=0)
    b = bundle.train.next_batch()
    assert b["tokens"].shape == (8, 12) and b["tokens"].dtype == np.int64
    assert b["loss_mask"].dtype == np.float32
    for tok, tgt, mask in zip(b["tokens"], b["targets"], b["loss_mask"], strict=True):
        seq = np.concatenate([tok, tgt[-1:]])
        digits = seq[:6]
        assert seq[6] == 10  # separator
        assert np.array_equal(seq[7:], solve(digits))
        assert np.array_equal(tgt, seq[1:])
        assert np.array_equal(tgt[mask == 1], solve(digits))  # only the answer is masked in
        assert mask.sum() == 6
    assert bundle.info["vocab"] == 11
    assert bundle.decode(b["tokens"][0])[6] == "|"


def test_validation_is_fixed_and_disjoint_from_training():
    spec = {"task": "reverse_digits", "length": 3, "val_size": 200}  # 1000 possible samples
    a = build_data(spec, batch=64, seed=0)
    b = build_data(spec, batch=64, seed=99)
    assert np.array_equal(a.val.fields["tokens"], b.val.fields["tokens"])  # not the train seed
    val = {row.tobytes() for row in a.val.fields["tokens"]}
    assert len(val) == 200
    seen = {row.tobytes() for bt in _batches(a, 60) for row in bt["tokens"]}
    assert len(seen) > 700  # the stream covers most of the other 800 sequences ...
    assert not seen & val  # ... and never a validation one
    finite = build_data({**spec, "train_size": 300}, batch=64, seed=0)
    assert not {r.tobytes() for r in finite.train.data.fields["tokens"]} & val


def test_held_out_fraction_must_be_a_fraction():
    with pytest.raises(ConfigError, match=r"held-out fraction must be in \[0, 1\), got 1.5"):
        build_data({"dataset": "digits", "test_fraction": 1.5}, batch=8, seed=0)


def test_too_small_a_task_is_refused():
    with pytest.raises(ConfigError, match="distinct samples"):
        build_data({"task": "reverse_digits", "length": 2, "val_size": 80}, batch=8, seed=0)


def test_classification_tasks_labels():
    maj = build_data(
        {"task": "majority", "length": 7, "val_size": 20}, batch=50, seed=0
    ).train.next_batch()
    assert maj["x"].shape == (50, 7, 1) and maj["x"].dtype == np.float32
    assert np.array_equal(maj["y"], (maj["x"][..., 0].sum(1) > 3.5).astype(np.int64))
    tok = build_data({"task": "majority", "format": "tokens"}, batch=4, seed=0).train.next_batch()
    assert tok["x"].dtype == np.int64 and tok["x"].shape == (4, 15)
    xor = build_data({"task": "xor", "noise": 0.0}, batch=40, seed=0).train.next_batch()
    assert np.array_equal(xor["y"], ((xor["x"][:, 0] > 0) ^ (xor["x"][:, 1] > 0)).astype(int))
    spi = build_data({"task": "spirals"}, batch=1000, seed=0)
    assert len(spi.val) == 400 and set(np.unique(spi.train.next_batch()["y"])) == {0, 1}


def test_unknown_task_and_keys():
    with pytest.raises(ConfigError, match="did you mean `sort_digits`"):
        build_data({"task": "sort_digit"}, batch=8, seed=0)
    with pytest.raises(ConfigError, match="unknown key `lenght`"):
        build_data({"task": "sort_digits", "lenght": 3}, batch=8, seed=0)
    with pytest.raises(ConfigError, match="exactly one of"):
        build_data({"task": "xor", "dataset": "digits"}, batch=8, seed=0)


def test_digits_shapes_labels_and_stratified_split():
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 8, 8) and images.max() == 16 and images.min() == 0
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    bundle = build_data({"dataset": "digits"}, batch=64, seed=0)
    b = bundle.train.next_batch()
    assert b["x"].shape == (64, 1, 8, 8) and b["x"].dtype == np.float32
    assert b["y"].dtype == np.int64 and b["x"].min() >= 0 and b["x"].max() <= 1
    train, test = bundle.train.data, bundle.val
    assert len(train) + len(test) == 1797
    frac = np.bincount(test.fields["y"]) / np.bincount(labels)
    assert np.all(np.abs(frac - 0.2) < 0.01)  # every class held out at the same rate
    rows = {r.tobytes() for r in train.fields["x"]}
    dup = sum(r.tobytes() in rows for r in test.fields["x"])
    assert dup == 0  # no test image is also a training image
    flat = build_data({"dataset": "digits", "flatten": True}, batch=8, seed=0)
    assert flat.train.next_batch()["x"].shape == (8, 64)
    other = build_data({"dataset": "digits"}, batch=64, seed=5)
    assert np.array_equal(other.val.fields["y"], test.fields["y"])  # split fixed by data seed


def test_digits_file_damage_is_a_data_error(tmp_path):
    bad = tmp_path / "digits.csv.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read the digits"):
        load_digits_arrays(bad)
    with gzip.open(bad, "wt") as fh:
        fh.write("1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="65 columns"):
        load_digits_arrays(bad)


# --- user files ---------------------------------------------------------------------------


def test_npz_file(tmp_path):
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = np.arange(100) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y, extra=np.zeros(100))
    bundle = build_data(
        {"file": "d.npz", "fields": ["x", "y"], "val_fraction": 0.2},
        batch=10,
        seed=0,
        base_dir=tmp_path,
    )
    assert set(bundle.train.next_batch()) == {"x", "y"}
    assert len(bundle.train.data) == 80 and len(bundle.val) == 20
    both = np.concatenate([bundle.train.data.fields["x"], bundle.val.fields["x"]])
    assert sorted(both[:, 0].tolist()) == x[:, 0].tolist()


def test_npy_mapping_and_val_file(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((10, 3), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(10, np.int64))
    np.savez(tmp_path / "val.npz", x=np.ones((4, 3)), y=np.zeros(4, np.int64))
    bundle = build_data(
        {"file": {"x": "x.npy", "y": "y.npy"}, "val_file": "val.npz"},
        batch=5,
        seed=0,
        base_dir=tmp_path,
    )
    assert len(bundle.train.data) == 10 and len(bundle.val) == 4


def test_csv_file(tmp_path):
    (tmp_path / "d.csv").write_text(
        "a,b,label\n" + "".join(f"{i},{i * 0.5},{i % 3}\n" for i in range(30))
    )
    bundle = build_data({"file": str(tmp_path / "d.csv"), "val_fraction": 0}, batch=30, seed=0)
    b = bundle.train.next_batch()
    assert b["x"].shape == (30, 2) and b["x"].dtype == np.float32
    assert b["y"].dtype == np.int64 and sorted(b["y"].tolist()) == sorted(i % 3 for i in range(30))
    assert bundle.val is None
    only_b = build_data({"file": str(tmp_path / "d.csv"), "x": ["b"], "y": "a"}, batch=4, seed=0)
    assert only_b.train.next_batch()["x"].shape == (4, 1)


def test_txt_file_character_lm(tmp_path):
    text = "hello world, " * 40
    (tmp_path / "t.txt").write_text(text)
    bundle = build_data({"file": str(tmp_path / "t.txt"), "block": 16}, batch=4, seed=0)
    b = bundle.train.next_batch()
    assert b["tokens"].shape == (4, 16) and np.array_equal(b["tokens"][:, 1:], b["targets"][:, :-1])
    assert bundle.info["vocab"] == len(set(text))
    decoded = bundle.decode(b["tokens"][0])
    assert decoded in text * 2
    train_text = "".join(bundle.decode(r) for r in bundle.train.data.fields["tokens"])
    assert len(train_text) <= 0.9 * len(text)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("missing.npz", None, "not found"),
        ("bad.npz", b"PK\x03\x04garbage", "cannot read"),
        ("bad.npy", b"\x93NUMPY\x01\x00trunc", "cannot read"),
        ("obj.npy", "object", "cannot read"),
        ("bad.csv", b"a,b\n1,2\n3,x\n", r"bad.csv:3: column `b` value 'x'"),
        ("ragged.csv", b"a,b\n1,2\n3\n", "1 values, but the header has 2"),
        ("empty.csv", b"a,b\n", "at least one data row"),
        ("short.txt", b"hi", "too few"),
        ("latin.txt", "é".encode("latin-1") * 100, "not UTF-8"),
        ("data.json", b"{}", "unsupported data file type"),
        ("ragged.npz", "ragged", "share their first"),
        ("strings.npz", "strings", "numbers only"),
        ("array.npz", "npy-inside", "single .npy array, not a .npz"),
        ("archive.npy", "npz-inside", "a .npz archive, not a single .npy"),
        ("fields.npz", "no-field", "no array named z; the file has x"),
    ],
)
def test_bad_files_raise_data_error(tmp_path, name, content, match):
    path = tmp_path / name
    if content == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content == "ragged":
        np.savez(path, x=np.zeros((5, 2)), y=np.zeros(4))
    elif content == "strings":
        np.savez(path, x=np.array(["a", "b"]))
    elif content == "npy-inside":
        with open(path, "wb") as fh:
            np.save(fh, np.zeros(3))
    elif content == "npz-inside":
        with open(path, "wb") as fh:
            np.savez(fh, x=np.zeros(3))
    elif content == "no-field":
        np.savez(path, x=np.zeros(3))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        spec = {"file": str(path)}
        spec.update({"block": 8} if name.endswith(".txt") else {})
        spec.update({"fields": ["z"]} if content == "no-field" else {})
        build_data(spec, batch=4, seed=0)


def test_feeder_checks_names_shapes_and_dtypes():
    inputs = {
        "x": TensorSpec("x", ("B", 1, 8, 8), "float32"),
        "y": TensorSpec("y", ("B",), "int64"),
    }
    feed = Feeder(inputs, source="digits")
    ok = feed({"x": np.zeros((4, 1, 8, 8), np.float64), "y": np.zeros(4, np.int32)})
    assert ok["x"].dtype == np.float32 and ok["y"].dtype == np.int64
    with pytest.raises(
        DataError, match=r"expects shape \[B, 1, 8, 8\], but digits gives \[4, 64\]"
    ):
        feed({"x": np.zeros((4, 64)), "y": np.zeros(4, np.int64)})
    with pytest.raises(DataError, match="dimension B is 4 for input `x` but 3 for `y`"):
        feed({"x": np.zeros((4, 1, 8, 8)), "y": np.zeros(3, np.int64)})
    with pytest.raises(DataError, match="non-integer"):
        feed({"x": np.zeros((4, 1, 8, 8)), "y": np.full(4, 0.5)})
    with pytest.raises(DataError, match=r"has no data field `y`.*map one"):
        feed({"x": np.zeros((4, 1, 8, 8)), "label": np.zeros(4, np.int64)})
    renamed = Feeder(inputs, {"y": "label"})({"x": np.zeros((2, 1, 8, 8)), "label": np.ones(2)})
    assert renamed["y"].tolist() == [1, 1]
    column = Feeder({"y": TensorSpec("y", ("B", 1), "float32")})({"y": np.arange(3)})
    assert column["y"].shape == (3, 1)  # trailing 1 added
    with pytest.raises(DataError, match="does not take"):
        Feeder(inputs, {"z": "x"})


def _balanced_by_stack(row):
    depth = 0
    for c in row:
        depth += 1 if c == 1 else -1
        if depth < 0:
            return False
    return depth == 0


def test_brackets_task():
    bundle = build_data({"task": "brackets", "length": 12, "val_size": 40}, batch=400, seed=0)
    b = bundle.train.next_batch()
    rows = b["x"][..., 0].astype(int)
    assert b["x"].shape == (400, 12, 1)
    assert np.array_equal(b["y"], [int(_balanced_by_stack(r)) for r in rows])
    assert np.all(rows.sum(axis=1) == 6)  # counting "(" alone cannot solve it
    assert 0.4 < b["y"].mean() < 0.65
    with pytest.raises(ConfigError, match="must be even"):
        build_data({"task": "brackets", "length": 7}, batch=4, seed=0)
