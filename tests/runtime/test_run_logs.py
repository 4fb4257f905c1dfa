"""What a training run shows and logs (issue #16, "Training runs"): the header before the first
step, steady-state speed and ETA (warm-up left out), metrics.csv, TensorBoard event files (when
tensorboardX is installed, and nothing when it is not), loss.png, best/ without early stopping,
the rounded early-stopping message, and `graphc sample --prompt` on a model without text."""

import csv
import json
import math
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from graphc.runtime import load_checkpoint, runlog, train
from graphc.runtime.distributed import World
from graphc.runtime.plot import plot_losses, second_metric, smooth
from graphc.runtime.progress import Meter, PlainProgress, Progress

from .toymodels import MLP


def _spirals(**cfg):
    train_cfg = {
        "data": {"task": "spirals"},
        "batch": 16,
        "steps": 12,
        "eval_every": 4,
        "optimizer": {"name": "adam", "lr": 0.01},
        **cfg,
    }
    return MLP(hidden=8, train=train_cfg)


def _jsonl(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# --- the header -------------------------------------------------------------------------------


def test_the_header_comes_before_the_first_step(tmp_path, capsys):
    model = _spirals(freeze=["fc1.*"], accumulate=2, schedule={"name": "cosine", "warmup": 3})
    train(model, out_dir=tmp_path / "run", progress=PlainProgress(interval=0.0))
    lines = capsys.readouterr().out.splitlines()
    first_step = next(i for i, line in enumerate(lines) if line.startswith("step 1/12"))
    header = "\n".join(lines[:first_step])
    assert lines[0] == "training mlp"
    assert "parameters   18 trainable, 24 frozen, 2 buffers" in header
    assert "data         task spirals: 1,000 training samples, 400 validation" in header
    assert "steps        12 (0.387 epochs) × batch 16 × 2 accumulated = 32 samples a step" in header
    assert "optimizer    adam lr 0.01, cosine schedule, 3 warmup steps" in header
    assert "device       CPU, " in header and "core" in header
    assert f"run dir      {tmp_path / 'run'}" in header
    assert "tensorboard  " in header


def test_the_header_names_mpi_ranks_and_kernel_threads(monkeypatch):
    monkeypatch.setattr(runlog, "kernel_threads", lambda: 1)
    text = runlog.describe_device(World(rank=0, size=2), batch=64)
    assert "1 kernel thread (--threads, GRAPHC_THREADS); 2 MPI ranks, 32 samples each" in text
    assert "MPI" not in runlog.describe_device(World(), batch=64)


def test_silent_progress_prints_no_header(tmp_path, capsys):
    train(_spirals(steps=2), out_dir=tmp_path, progress="none")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# --- steady-state speed -------------------------------------------------------------------------


def test_the_meter_leaves_the_warm_up_out():
    meter = Meter(step=0, now=0.0)
    meter.add(1, 32, now=10.0)  # the first step compiles: 10 s
    assert meter.first_step_sec == 10.0 and not meter.steady
    assert math.isnan(meter.eta(1000))
    meter.add(2, 32, now=10.01)
    for step in range(3, 103):  # then 100 steps of 10 ms
        meter.add(step, 32, now=10.01 + (step - 2) * 0.01)
    steps_per_sec, samples_per_sec = meter.rates()
    assert steps_per_sec == pytest.approx(100) and samples_per_sec == pytest.approx(3200)
    assert meter.eta(1102) == pytest.approx(10.0)  # 1000 steps left at 100 steps/s
    overall = meter.overall()
    assert overall["steady"] and overall["samples_per_sec"] == pytest.approx(3200)
    assert overall["first_step_sec"] == 10.0 and overall["warmup_steps"] == 2


def test_the_window_follows_a_change_of_speed():
    meter = Meter(step=0, now=0.0)
    now = 0.0
    for step in range(1, 2000):
        now += 0.01 if step < 1000 else 0.1  # 100 steps/s, then 10
        meter.add(step, 1, now=now)
    assert meter.rates()[0] == pytest.approx(10, rel=1e-6)  # the last 20 s only
    assert 10 < meter.overall()["steps_per_sec"] < 100


def test_a_run_too_short_for_a_steady_state_still_has_a_speed():
    meter = Meter(step=0, now=0.0)
    meter.add(1, 10, now=2.0)
    overall = meter.overall()
    assert overall["steady"] is False and overall["samples_per_sec"] == pytest.approx(5.0)


def test_the_summary_reports_the_steady_speed(tmp_path):
    summary = train(_spirals(), out_dir=tmp_path, progress="none")
    speed = summary["throughput"]
    assert speed["steady"] is True and speed["warmup_steps"] == 2
    assert speed["samples_per_sec"] > 0 and speed["first_step_sec"] >= 0
    assert json.loads((tmp_path / "summary.json").read_text())["throughput"] == speed


class SlowFirstStep(MLP):
    slow = True

    def forward(self, params, batch, *, training, seed):
        if training and self.slow:
            self.slow = False
            time.sleep(0.4)  # as Numba compiling kernels on their first call
        return super().forward(params, batch, training=training, seed=seed)


def test_a_slow_first_step_says_it_is_compiling(tmp_path, capsys):
    model = SlowFirstStep(hidden=8, train=_spirals(steps=3).train)
    bar = PlainProgress(interval=0.0)
    bar.slow_start = 0.1
    train(model, out_dir=tmp_path, progress=bar)
    out = capsys.readouterr().out
    assert "step 1: compiling kernels…" in out
    assert out.index("compiling kernels") < out.index("step 1/3")
    bar = PlainProgress(interval=0.0)  # fast: nothing said
    train(_spirals(steps=3), out_dir=tmp_path / "fast", progress=bar)
    assert "compiling" not in capsys.readouterr().out


def test_the_first_metrics_row_leaves_the_first_step_out(tmp_path):
    model = SlowFirstStep(hidden=8, train=_spirals(steps=8, log_every=4).train)
    train(model, out_dir=tmp_path, progress="none")
    first = _jsonl(tmp_path)[0]
    assert first["step"] == 4 and first["time"] > 0.4
    assert first["samples_per_sec"] > 3 * 16 / 0.1  # steps 2-4 only; with step 1: < 160


def test_slow_blocks_are_announced_only_when_slow(capsys):
    bar = PlainProgress()
    with bar.slow("compiling kernels…", after=0.05):
        time.sleep(0.3)
    with bar.slow("never shown", after=5.0):
        pass
    with Progress().slow("silent kind", after=0.0):
        time.sleep(0.05)
    assert capsys.readouterr().out == "compiling kernels…\n"


# --- metrics.csv --------------------------------------------------------------------------------


def _csv(out):
    with open(out / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_metrics_csv_mirrors_metrics_jsonl(tmp_path):
    train(_spirals(), out_dir=tmp_path, progress="none")
    rows, table = _jsonl(tmp_path), _csv(tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step" and set(header) == {k for r in rows for k in r}
    assert header.index("val_loss") > header.index("loss")  # first-seen order
    assert len(table) == len(rows)
    for row, line in zip(rows, table, strict=True):
        for key in header:
            if key in row:
                assert float(line[key]) == pytest.approx(row[key], rel=1e-12)
            else:
                assert line[key] == ""


def test_metrics_csv_after_resume_follows_metrics_jsonl(tmp_path):
    train(_spirals(), out_dir=tmp_path, progress="none", max_steps=6)
    (tmp_path / "metrics.csv").write_text("damaged")  # rewritten from the rows, not appended to
    train(_spirals(), out_dir=tmp_path, progress="none", resume=True)
    rows, table = _jsonl(tmp_path), _csv(tmp_path)
    assert [int(line["step"]) for line in table] == [r["step"] for r in rows]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 13))
    for row, line in zip(rows, table, strict=True):
        assert all(float(line[k]) == pytest.approx(v, rel=1e-12) for k, v in row.items())


def test_csv_cells():
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": None, "val_loss": float("nan"), "ok": True}]
    columns = runlog.csv_columns(rows)
    assert columns == ["step", "loss", "val_loss", "ok"]
    assert runlog.csv_lines(rows, columns, header=True) == "step,loss,val_loss,ok\n1,0.5,,\n2,,,1\n"


# --- TensorBoard --------------------------------------------------------------------------------


def _events(path):
    """(step, {tag: value}) of every scalar event in the event files under ``path``."""
    from tensorboardX.proto.event_pb2 import Event

    out = []
    for file in sorted(path.glob("events.out.tfevents.*")):
        data = file.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            if event.HasField("summary"):
                out.append((event.step, {v.tag: v.simple_value for v in event.summary.value}))
    return out


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboardX")
    train(_spirals(), out_dir=tmp_path, progress="none")
    rows = _jsonl(tmp_path)
    train_events = _events(tmp_path / "tensorboard" / "train")
    val_events = _events(tmp_path / "tensorboard" / "val")
    assert [s for s, _ in train_events] == [r["step"] for r in rows if "loss" in r]
    assert [s for s, _ in val_events] == [r["step"] for r in rows if "val_loss" in r]
    step, tags = train_events[-1]
    assert {"loss", "accuracy", "lr", "grad_norm", "samples_per_sec"} <= set(tags)
    assert "time" not in tags and "step" not in tags
    assert tags["loss"] == pytest.approx(rows[-1]["loss"], rel=1e-6)
    assert val_events[-1][1]["loss"] == pytest.approx(rows[-1]["val_loss"], rel=1e-6)


def test_a_resumed_run_purges_what_the_earlier_process_logged_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto.event_pb2 import Event

    train(_spirals(checkpoint_every=4), out_dir=tmp_path, progress="none", max_steps=6)
    train(_spirals(), out_dir=tmp_path, progress="none", resume=True)
    files = sorted((tmp_path / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert len(files) == 2
    data = files[1].read_bytes()
    starts = []
    at = 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        if event.HasField("session_log"):
            starts.append(event.step)
    assert starts == [7]  # the checkpoint was at step 6: TensorBoard drops steps >= 7 of before


def test_tensorboardx_loads_without_torch_or_boto3_and_leaves_them_importable():
    # a fresh interpreter: this one may have torch loaded already (then nothing is hidden)
    pytest.importorskip("tensorboardX")
    code = """
import sys
from graphc.runtime import runlog
runlog._import_tensorboardx()
print(sorted(m for m in ("torch", "boto3") if m in sys.modules))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"  # neither imported, and neither left as a None entry


def test_without_tensorboardx_nothing_is_written_and_the_header_says_how(tmp_path, capsys, monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'tensorboardX'")

    monkeypatch.setattr(runlog, "_import_tensorboardx", missing)
    summary = train(_spirals(), out_dir=tmp_path, progress=PlainProgress(interval=60))
    assert summary["status"] == "completed"
    assert not (tmp_path / "tensorboard").exists()
    out = capsys.readouterr().out
    assert out.count("pip install 'graphc[tensorboard]'") == 1
    assert "tensorboard  off (" in out


# --- loss.png -----------------------------------------------------------------------------------


def test_loss_png_curves(tmp_path):
    history = [{"step": s, "loss": 1.0 / s} for s in range(1, 101)]
    history += [{"step": s, "val_loss": 1.2 / s, "val_accuracy": 1 - 1 / s} for s in (25, 50, 100)]
    assert second_metric(history) == "val_accuracy"
    assert second_metric(history, "val_loss") == "val_accuracy"
    assert second_metric([{"step": 1, "val_loss": 1.0}]) is None
    plot_losses(history, tmp_path / "loss.png", title="t", best_step=100)
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_smoothing_is_debiased():
    assert smooth([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    values = smooth([0.0, 10.0], 0.5)
    assert values[0] == 0.0 and 0 < values[1] < 10


# --- best/ --------------------------------------------------------------------------------------


def test_best_is_kept_by_val_loss_without_early_stopping(tmp_path):
    summary = train(_spirals(steps=20, eval_every=2), out_dir=tmp_path, progress="none")
    evals = [r for r in _jsonl(tmp_path) if "val_loss" in r]
    low = min(r["val_loss"] for r in evals)
    best_step = next(r["step"] for r in evals if r["val_loss"] == low)
    assert summary["best"]["metric"] == "val_loss" and summary["best"]["best_step"] == best_step
    assert summary["best"]["best"] == low
    assert load_checkpoint(tmp_path / "best").state["step"] == best_step


def test_best_after_resume_equals_a_straight_runs(tmp_path):
    cfg = {"steps": 20, "eval_every": 2}
    straight = train(_spirals(**cfg), out_dir=tmp_path / "a", progress="none")
    train(_spirals(**cfg), out_dir=tmp_path / "b", progress="none", max_steps=9)
    resumed = train(_spirals(**cfg), out_dir=tmp_path / "b", progress="none", resume=True)
    assert resumed["best"]["best_step"] == straight["best"]["best_step"]
    a = load_checkpoint(tmp_path / "a" / "best").params
    b = load_checkpoint(tmp_path / "b" / "best").params
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_early_stopping_message_rounds(tmp_path, capsys):
    model = _spirals(
        steps=100,
        eval_every=5,
        optimizer={"name": "sgd", "lr": 0.0},
        early_stopping={"metric": "val_loss", "patience": 2},
    )
    train(model, out_dir=tmp_path, progress=PlainProgress(interval=60))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("early stopping"))
    best = line.split("(best ")[1].split(" at step")[0]
    assert len(best.split(".")[1]) == 4, line


# --- graphc sample --prompt ---------------------------------------------------------------------


def test_sample_prompt_on_a_model_without_text_says_so(tmp_path):
    from click.testing import CliRunner

    from graphc.cli import main
    from tests.conftest import SPECS

    result = CliRunner().invoke(
        main, ["sample", str(SPECS / "mlp.yaml"), "--checkpoint", str(tmp_path), "--prompt", "hi"]
    )
    assert result.exit_code == 2
    assert "--prompt needs a character-level model" in result.output
    assert "trains on task two_spirals" in result.output
