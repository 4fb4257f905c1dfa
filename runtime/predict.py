"""Look at what a trained model does: ``predict`` (sequence answers or classes) and
``sample_text`` (character-level generation).

For answer-style sequence tasks (a batch with ``tokens``, ``targets`` and ``loss_mask``),
``predict`` decodes greedily: every answer slot in ``tokens`` is blanked, then the answer is
filled in one position at a time from the argmax of the model's first output, so the model never
sees the expected answer. For classifiers it reports the argmax class and its probability.
"""

from __future__ import annotations

import numpy as np

from .data import DataBundle, Feeder
from .errors import DataError
from .setup import pick_data


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _logits(model, params, feed: Feeder, batch: dict, seed: int = 0) -> np.ndarray:
    result = model.forward(params, feed(batch), training=False, seed=seed)
    return np.asarray(result.outputs[model.outputs[0]])


def greedy_answers(model, params, batch: dict, feed: Feeder | None = None) -> np.ndarray:
    """Predicted ``targets`` [N,T] for an answer-style batch (valid where ``loss_mask`` is 1)."""
    feed = feed or Feeder(model.inputs)
    tokens = np.array(batch["tokens"])
    mask = np.asarray(batch["loss_mask"]) > 0
    slots = np.zeros_like(mask)
    slots[:, 1:] = mask[:, :-1]  # tokens[:, p + 1] repeats targets[:, p]
    tokens[slots] = 0
    pred = np.zeros_like(np.asarray(batch["targets"]))
    for p in np.flatnonzero(mask.any(axis=0)):
        logits = _logits(model, params, feed, {**batch, "tokens": tokens})
        pred[:, p] = np.argmax(logits[:, p], axis=-1)
        if p + 1 < tokens.shape[1]:
            tokens[:, p + 1] = np.where(mask[:, p], pred[:, p], tokens[:, p + 1])
    return pred


def _decoder(bundle: DataBundle | None):
    if bundle is not None and bundle.decode is not None:
        return bundle.decode
    return lambda row: " ".join(str(int(t)) for t in row)


def predict(
    model,
    params: dict[str, np.ndarray],
    data=None,
    *,
    n: int = 8,
    split: str = "val",
    base_dir=None,
) -> list[dict]:
    """Predictions for the first ``n`` samples of a data set, one dict per sample.

    ``data``/``split`` as for :func:`~.evaluate.evaluate`. Each dict has ``text`` (a one-line
    rendering), ``correct`` (when labels exist) and, for answer-style sequences,
    ``input``/``predicted``/``expected``; for classifiers ``predicted``/``label``/``prob``.
    """
    picked = pick_data(model, data, split=split, base_dir=base_dir)
    if picked.setup is not None:
        picked.setup.check_outputs(model, params)  # labels in the model's range
    dataset, feed, bundle = picked.dataset, picked.feed, picked.bundle
    batch = feed.view(dataset.take(slice(0, n)))
    generative = generative_outputs(model, feed)
    if generative:
        return _generated_rows(model, params, feed, batch, generative[0], bundle)
    decode = _decoder(bundle)
    rows = []
    if {"tokens", "targets", "loss_mask"} <= set(batch):
        pred = greedy_answers(model, params, batch, feed)
        mask = batch["loss_mask"] > 0
        for i in range(len(pred)):
            first = int(np.flatnonzero(mask[i])[0]) if mask[i].any() else pred.shape[1]
            shown, got, want = (
                batch["tokens"][i, : first + 1],
                pred[i][mask[i]],
                batch["targets"][i][mask[i]],
            )
            ok = bool(np.array_equal(got, want))
            row = {
                "input": decode(shown),
                "predicted": decode(got),
                "expected": decode(want),
                "correct": ok,
            }
            row["text"] = f"{row['input']} -> {row['predicted']}" + (
                "  ok" if ok else f"  (expected {row['expected']})"
            )
            rows.append(row)
        return rows
    logits = _logits(model, params, feed, batch)
    if logits.ndim == 1 or logits.shape[-1] == 1:  # one binary logit per sample
        p1 = 1.0 / (1.0 + np.exp(-logits.reshape(len(logits), -1)[..., 0].astype(np.float64)))
        probs = np.stack([1 - p1, p1], axis=-1)
    else:
        probs = _softmax(logits)
    labels = batch.get("y")
    for i, p in enumerate(probs):
        cls = np.argmax(p, axis=-1)
        row = {
            "predicted": cls.tolist(),
            "prob": np.take_along_axis(p, cls[..., None], -1)[..., 0].tolist(),
        }
        if labels is not None:
            row["label"] = np.asarray(labels[i]).tolist()
            row["correct"] = bool(np.array_equal(cls, labels[i]))
        prob = f" (p={row['prob']:.2f})" if p.ndim == 1 else ""
        row["text"] = f"predicted {row['predicted']}{prob}" + (
            f", label {row['label']}" if labels is not None else ""
        )
        rows.append(row)
    return rows


def generative_outputs(model, feed: Feeder) -> list[str]:
    """Outputs computed from generated inputs alone (a GAN generator's samples)."""
    generated = set(feed.generate)
    return [o for o in model.outputs if generated and model.sources(o) <= generated]


def _generated_rows(model, params, feed: Feeder, batch: dict, output: str, bundle) -> list[dict]:
    """Fresh samples of a generative output, one row each; scored when the task can score them."""
    inputs = feed(batch, key=(3,))  # a draw of its own: training uses (0, step, micro), eval (1, i)
    samples = np.asarray(model.forward(params, inputs, training=False).outputs[output])
    rows = []
    for s in samples:
        values = np.ravel(s)
        shown = " ".join(f"{v:.3f}" for v in values[:8]) + (" …" if values.size > 8 else "")
        rows.append({"output": output, "sample": s.tolist(), "text": f"{output}: {shown}"})
    info = bundle.info if bundle is not None else {}
    if info.get("task") == "gaussian_ring":
        from .data.tasks import ring_quality

        q = ring_quality(samples, modes=info["modes"], radius=info["radius"], std=info["std"])
        rows.append({"quality": q, "text": (
            f"{q['high_quality']:.0%} of {len(samples)} samples within 4σ of a mode; "
            f"{q['modes_covered']}/{info['modes']} modes covered")})
    return rows


def sample_text(
    model,
    params: dict[str, np.ndarray],
    data=None,
    *,
    prompt: str = "",
    length: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
    base_dir=None,
) -> str:
    """Continue ``prompt`` by ``length`` characters with a character-level LM (``.txt`` data).

    ``data`` as for :func:`predict` (None: the spec's ``train.data``). Temperature 0 is
    greedy; the context is the last ``seq_len`` tokens, right-padded (the model is causal, so
    padding after the read position does not matter).
    """
    bundle = (
        data if isinstance(data, DataBundle) else pick_data(model, data, base_dir=base_dir).bundle
    )
    info = bundle.info
    if "chars" not in info:
        raise DataError(
            "sample_text needs a character-level `.txt` data source; for other data use predict()"
        )
    chars, block = info["chars"], int(info["seq_len"])
    if chars is not None:
        lookup = {c: i for i, c in enumerate(chars)}
        unknown = sorted(set(prompt) - set(lookup))
        if unknown:
            raise DataError(f"prompt characters not in the vocabulary: {''.join(unknown)!r}")
        ids = [lookup[c] for c in prompt]
    else:
        ids = list(prompt.encode())
    ids = ids or [0]
    feed = Feeder(model.inputs, info.get("map"), generate=info.get("generate"))
    rng = np.random.default_rng(seed)
    start = len(ids)
    for _ in range(length):
        context = ids[-block:]
        tokens = np.zeros((1, block), np.int64)
        tokens[0, : len(context)] = context
        batch = {
            "tokens": tokens,
            "targets": np.zeros_like(tokens),
            "loss_mask": np.ones(tokens.shape, np.float32),
        }
        z = _logits(model, params, feed, batch)[0, len(context) - 1].astype(np.float64)
        if temperature <= 0:
            ids.append(int(np.argmax(z)))
        else:
            ids.append(int(rng.choice(len(z), p=_softmax(z / temperature))))
    return prompt + bundle.decode(np.array(ids[start:]))
