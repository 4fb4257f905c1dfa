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


# --- predictions on new inputs (``graphc predict``): only the inputs the outputs read ---------

NEXT_TOKEN_TASKS = ("reverse_digits", "sort_digits")  # targets = the tokens shifted by one


def output_kind(model, output: str) -> str | None:
    """``"classes"`` when ``output`` is the logits of a loss that reads class labels
    (cross_entropy, hinge), ``"binary"`` for bce_with_logits, else None (a plain output)."""
    graph = getattr(model, "graph", None)
    if graph is None or output not in graph.outputs:
        return None
    from graphc.ops import OPS

    tensor = graph.outputs[output]
    for node in graph.nodes.values():
        op = None if node.is_input else OPS[node.op]
        if op is None or not op.loss:
            continue
        for i in node.inputs:
            port = op.port(i.port)
            if i.tensor == tensor and port is not None and port.logits:
                if any(p.dtype == "int" for p in op.inputs):
                    return "classes"
                if node.op == "bce_with_logits":
                    return "binary"
    return None


def label(values: np.ndarray, kind: str, names: list[str] | None = None) -> tuple[np.ndarray, list[dict]]:
    """Predicted classes (argmax of the logits; a binary logit > 0) with their probabilities,
    as an array and as one row per sample (``predicted``, ``prob``, ``class`` with names)."""
    values = np.asarray(values, np.float64)
    n_classes = 2 if kind == "binary" else values.shape[-1]
    if names is not None and len(names) != n_classes:
        raise DataError(f"{len(names)} class names given for {n_classes} classes")
    if kind == "binary":
        z = values[..., 0] if values.ndim > 1 and values.shape[-1] == 1 else values
        pred = (z > 0).astype(np.int64)
        p1 = 1.0 / (1.0 + np.exp(-z))
        prob = np.where(pred == 1, p1, 1.0 - p1)
    else:
        probs = _softmax(values)
        pred = np.argmax(probs, axis=-1)
        prob = np.take_along_axis(probs, pred[..., None], -1)[..., 0]
    rows = []
    for p, q in zip(pred, prob, strict=True):
        row = {"predicted": p.tolist(), "prob": np.round(q, 6).tolist()}
        if names is not None:
            picked = np.asarray(names, dtype=object)[p]
            row["class"] = picked.tolist() if isinstance(picked, np.ndarray) else picked
        rows.append(row)
    return pred, rows


def predict_arrays(model, params, arrays: dict[str, np.ndarray], *, outputs=None, source: str = "input"
                   ) -> dict[str, np.ndarray]:
    """``model.predict`` on user arrays keyed by input (or ``train.data.map`` field) name:
    arrays are reshaped to the declared shapes where their sizes fit, inputs that
    ``train.data.generate`` draws (constants, noise) are drawn when not given, and every
    shape or dtype problem is a DataError naming the input and ``source``."""
    from .data import Feeder
    from .predict_io import fit_shapes

    inference = model.inference_model(outputs)
    data = (model.train or {}).get("data") or {}
    data = data if isinstance(data, dict) else {}
    mapping = data.get("map") or {}
    arrays = dict(arrays)
    for name in inference.inputs:
        field = mapping.get(name, name)
        if name not in arrays and field in arrays:
            arrays[name] = arrays.pop(field)
    generate = {k: v for k, v in (data.get("generate") or {}).items()
                if k in inference.inputs and k not in arrays}
    unknown = sorted(set(arrays) - set(inference.inputs))
    if unknown and not set(arrays) & set(inference.inputs):
        raise DataError(f"{source} has {', '.join(f'`{k}`' for k in unknown)}, but the outputs read "
                        f"{', '.join(f'`{k}`' for k in inference.inputs)}")
    fed = {k: v for k, v in fit_shapes(arrays, inference.inputs).items() if k in inference.inputs}
    batch = Feeder(inference.inputs, source=source, generate=generate)(fed)
    if not _samples_independent(inference):
        return model.predict(params, batch, outputs=inference.outputs)
    n = len(next(iter(batch.values())))
    if n == 0:
        raise DataError(f"{source} holds no samples")
    parts = [model.predict(params, {k: v[i : i + PREDICT_CHUNK] for k, v in batch.items()},
                           outputs=inference.outputs) for i in range(0, n, PREDICT_CHUNK)]
    return {o: parts[0][o] if len(parts) == 1 else np.concatenate([p[o] for p in parts]) for o in parts[0]}


# Samples per forward when a prediction runs over many: a file of a million samples is not one
# batch of a million (its activations would not fit), and a chunk this large costs nothing in
# speed (the per-call overhead is microseconds).
PREDICT_CHUNK = 256


def _samples_independent(inference) -> bool:
    """Whether every input and output of the inference model leads with one batch dim (B): then
    its forward treats the samples one by one (inference mode has no batch statistics), so a
    large input can run in chunks of samples. Otherwise (a constant-shaped input, an output
    that mixes samples) it runs as one batch."""
    leads = {s.shape[0] if s.shape else None for s in inference.inputs.values()}
    graph = inference.graph
    leads |= {str(t.shape[0]) if (t := graph.types.get(graph.outputs[o])) is not None and t.shape else None
              for o in inference.outputs}
    lead = next(iter(leads)) if len(leads) == 1 else None
    return isinstance(lead, str) and lead.isidentifier()


def text_codec(model, base_dir=None):
    """(encode, decode, window) for text prompts of a token model: the corpus' characters (or
    bytes) for a ``.txt`` data source, digits with ``|`` as the separator for the digit tasks,
    otherwise whitespace- or comma-separated integers. ``window`` is the longest context."""
    data = (model.train or {}).get("data") or {}
    data = data if isinstance(data, dict) else {}
    if str(data.get("file", "")).endswith(".txt"):
        bundle = pick_data(model, base_dir=base_dir).bundle
        chars = bundle.info["chars"]
        lookup = None if chars is None else {c: i for i, c in enumerate(chars)}

        def encode(text: str) -> list[int]:
            if lookup is None:
                return list(text.encode())
            unknown = sorted(set(text) - set(lookup))
            if unknown:
                raise DataError(f"prompt {text!r}: characters not in the vocabulary: {''.join(unknown)!r}")
            return [lookup[c] for c in text]

        return encode, lambda ids: bundle.decode(np.asarray(ids)), int(bundle.info["seq_len"])
    if data.get("task") in NEXT_TOKEN_TASKS:
        from .data.tasks import SEP, decode_digits

        def encode_digits(text: str) -> list[int]:
            bad = sorted(set(text.replace(" ", "")) - set("0123456789|"))
            if bad:
                raise DataError(f"prompt {text!r}: digit tasks read digits and `|`, found {''.join(bad)!r}")
            return [SEP if c == "|" else int(c) for c in text if c != " "]

        return encode_digits, lambda ids: decode_digits(np.asarray(ids)), 2 * int(data.get("length", 8))

    def encode_ints(text: str) -> list[int]:
        try:
            return [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            raise DataError(f"prompt {text!r}: expected token ids (integers)") from None

    return encode_ints, lambda ids: " ".join(str(int(t)) for t in ids), _max_len(model)


def _max_len(model) -> int | None:
    graph = getattr(model, "graph", None)
    lens = [n.attrs["max_len"] for n in graph.nodes.values() if n.op == "positional_encoding"] if graph else []
    return min(lens) if lens else None


def continue_prompts(model, params, prompts: list[str], *, output: str, length: int, base_dir=None,
                     names: list[str] | None = None) -> list[dict]:
    """Greedy continuations of text prompts by a token model whose ``output`` is next-token
    logits [B, T, V] over one int64 input [B, T] (``length`` tokens each); with ``length`` 0,
    the class of every prompt token instead (a tagger)."""
    if len(prompts) > PREDICT_CHUNK:  # a long file of prompts: a chunk of them per forward
        return [row for i in range(0, len(prompts), PREDICT_CHUNK)
                for row in continue_prompts(model, params, prompts[i : i + PREDICT_CHUNK], output=output,
                                            length=length, base_dir=base_dir, names=names)]
    inference = model.inference_model([output])
    tokens = [n for n, s in inference.inputs.items() if s.dtype == "int64" and len(s.shape) == 2]
    if len(inference.inputs) != 1 or not tokens:
        reads = ", ".join(f"`{n}` [{', '.join(map(str, s.shape))}] {s.dtype}" for n, s in inference.inputs.items())
        raise DataError(f"text prompts need a model whose output `{output}` reads one int64 token input "
                        f"[B, T]; it reads {reads}")
    encode, decode, window = text_codec(model, base_dir)
    ids = [encode(p) or [0] for p in prompts]
    if length <= 0:
        width = max(len(x) for x in ids)
        batch = np.zeros((len(ids), width), np.int64)
        for i, x in enumerate(ids):
            batch[i, : len(x)] = x
        logits = model.predict(params, {tokens[0]: batch}, outputs=[output])[output]
        pred, rows = label(logits, "classes", names)
        for i, (p, row) in enumerate(zip(prompts, rows, strict=True)):
            row.update(prompt=p, predicted=row["predicted"][: len(ids[i])], prob=row["prob"][: len(ids[i])])
            if "class" in row:
                row["class"] = row["class"][: len(ids[i])]
        return rows
    start = [len(x) for x in ids]
    for _ in range(length):
        contexts = [x[-window:] if window else x for x in ids]
        width = window or max(len(c) for c in contexts)
        batch = np.zeros((len(ids), width), np.int64)  # right-padded: a causal model ignores it
        for i, c in enumerate(contexts):
            batch[i, : len(c)] = c
        logits = model.predict(params, {tokens[0]: batch}, outputs=[output])[output]
        for i, c in enumerate(contexts):
            ids[i].append(int(np.argmax(logits[i, len(c) - 1])))
    return [{"prompt": p, "continuation": decode(x[s:])} for p, x, s in zip(prompts, ids, start, strict=True)]
