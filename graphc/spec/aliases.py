"""Attribute names from PyTorch (and a few from Keras) that graphc spells differently, for the
hint of an unknown-attribute diagnostic (GC102): `out_channels` → "did you mean `out`?".

graphc keeps one spelling per attribute, so these are suggestions, never accepted synonyms.
A rename applies only where the op has the graphc attribute (`dim` → `axis` on softmax, not
on embedding, whose `dim` is its own); the other entries explain what graphc does instead
(sizes inferred from the input, dropout and activations as nodes of their own, …).
"""

from __future__ import annotations

from graphc.ops import OpDef

# foreign name → graphc's attribute name (used when the op has that attribute)
RENAMES: dict[str, str] = {
    "out_channels": "out", "out_features": "out", "units": "out", "filters": "out",
    "kernel_size": "kernel", "pool_size": "kernel", "strides": "stride",
    "num_heads": "heads", "nhead": "heads", "n_heads": "heads", "is_causal": "causal",
    "use_bias": "bias",
    "num_embeddings": "num", "vocab_size": "num", "embedding_dim": "dim",
    "hidden_size": "hidden", "hidden_dim": "hidden",
    "dim": "axis", "keepdim": "keepdims", "start_dim": "start", "end": "stop",
    "perm": "dims", "axes": "dims", "new_shape": "shape", "target_shape": "shape",
    "split_size_or_sections": "sizes", "split_size": "sizes",
    "scale_factor": "scale",
    "rate": "p", "prob": "p", "dropout": "p", "drop_prob": "p",
    "epsilon": "eps", "elementwise_affine": "affine",
    "max_length": "max_len", "max_seq_len": "max_len", "max_position_embeddings": "max_len",
    "smoothing": "label_smoothing", "T": "temperature",
}

# foreign name → what graphc does instead (when no rename applies)
NOTES: dict[str, str] = {
    "in_channels": "graphc infers the input channels from the input's shape: remove it",
    "in_features": "graphc infers the input width from the input's last dimension: remove it",
    "input_size": "graphc infers the input width from the input's last dimension: remove it",
    "input_dim": "graphc infers the input width from the input's shape: remove it",
    "num_features": "graphc infers the feature count from the input's shape: remove it",
    "normalized_shape": "graphc normalizes over the last dimension, inferred from the input: remove it",
    "embed_dim": "graphc infers the width from the query input: remove it",
    "d_model": "graphc infers the width from the input: remove it",
    "num_layers": "stack layers with `repeat: N` on the node (or on a block instance)",
    "batch_first": "graphc sequences are always [B, T, D] (batch first): remove it",
    "reduction": "graphc losses are the mean over the batch (PyTorch's default): remove it",
    "dropout": "graphc keeps dropout a node of its own: add `{op: dropout, in: …, p: …}` after it",
    "activation": "graphc keeps activations nodes of their own: add `{op: relu, in: …}` after it",
    "inplace": "graphc has no in-place ops: remove it",
    "ceil_mode": "graphc sizes windows exactly (`round: exact`) or like PyTorch's default "
                 "(`round: floor`); ceil is not supported",
    "device": "graphc runs on the CPU: remove it",
    "dtype": "parameters are float32 (float64 in gradient checks): remove it",
}


KERAS = frozenset({"units", "filters", "pool_size", "strides", "use_bias", "rate", "epsilon",
                   "target_shape", "perm"})


def renamed(op: OpDef, key: str) -> str | None:
    """graphc's name for `key` on `op` when `key` is another framework's spelling of it."""
    target = RENAMES.get(key)
    return target if target is not None and target in op.attrs else None


def foreign_name_hint(op: OpDef, key: str) -> str | None:
    """The hint for `key`, unknown to `op`, when it is another framework's name; else None."""
    target = renamed(op, key)
    if target is not None:
        return f"did you mean `{target}`? `{key}` is {'Keras' if key in KERAS else 'PyTorch'}'s name for it"
    return NOTES.get(key)
