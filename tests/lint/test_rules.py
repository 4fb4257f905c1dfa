"""Every rule in the table fires on its bad example and stays silent on the fixed one.

The examples are the ones `--explain` prints and docs/lint-rules.md shows, so the documentation
is tested too."""

import pytest

from graphc.lint.engine import lint_file
from graphc.lint.table import SEVERITIES, all_rules
from tests.lint.helpers import codes, lint_text

RULES = all_rules()


def test_the_table_has_enough_documented_rules():
    assert len(RULES) >= 15
    names = [r.name for r in RULES.values()]
    assert len(set(names)) == len(names)
    for r in RULES.values():
        assert r.severity in SEVERITIES
        for text in (r.summary, r.rationale, r.fix, r.bad, r.good):
            assert text.strip(), f"{r.code} has an empty field"
        assert r.bad != r.good


@pytest.mark.parametrize("code", list(RULES))
def test_fires_on_bad_example(tmp_path, code):
    rule = RULES[code]
    result = lint_text(tmp_path, rule.bad)
    assert result.linted, f"{code}: the bad example must pass `check`: {result.diagnostics}"
    found = [d for d in result.diagnostics if d.code == code]
    assert found, f"{code} did not fire on its bad example; got {codes(result)}"
    for d in found:
        assert d.span is not None and d.span.file == str(tmp_path / "spec.yaml") and d.span.line >= 1
        assert d.hint
        assert d.severity in SEVERITIES


@pytest.mark.parametrize("code", list(RULES))
def test_silent_on_fixed_example(tmp_path, code):
    result = lint_text(tmp_path, RULES[code].good)
    assert result.linted
    assert code not in codes(result)
    # the fixed examples are clean of every rule, so they can be copied as they are
    assert result.diagnostics == [], [f"{d.code}: {d.message}" for d in result.diagnostics]


# Findings about suppressions themselves (GL001, GL002) and about train settings that belong
# to no node (GL402 learning rate, GL403 optimizer choice) are silenced per file instead;
# tests/lint/test_engine.py covers that (per-file-ignores).
NOT_ON_A_NODE = ("GL001", "GL002", "GL402", "GL403")


@pytest.mark.parametrize("code", [c for c in RULES if c not in NOT_ON_A_NODE])
def test_silenced_on_the_node(tmp_path, code):
    """Each node-level finding of a bad example disappears with `lint: {ignore: [CODE]}` on it."""
    rule = RULES[code]
    first = lint_text(tmp_path, rule.bad)
    target = next(d for d in first.diagnostics if d.code == code)
    assert target.nodes, f"{code} is a node-level rule but its finding names no node"
    node = target.nodes[0].split(".")[0]
    lines = rule.bad.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(f"{node}:") and line.rstrip().endswith("}"):
            lines[i] = line.rstrip()[:-1] + f", lint: {{ignore: [{code}], reason: test}}}}"
            break
    else:
        pytest.fail(f"{code}: write node `{node}` of the bad example as a one-line mapping")
    second = lint_text(tmp_path, "\n".join(lines) + "\n")
    assert code not in codes(second)
    assert any(d.code == code for d in second.suppressed)
    assert "GL002" not in codes(second)


def test_rules_skip_specs_with_check_errors(tmp_path):
    result = lint_text(tmp_path, RULES["GL101"].bad.replace("out: 3", "out: 3, bogus: 1"))
    assert not result.linted
    assert codes(result) == ["GC102"]
    assert result.failed()


def test_block_copies_are_reported_once(tmp_path):
    spec = RULES["GL302"].bad.replace("repeat: 4", "repeat: 6")
    result = lint_text(tmp_path, spec)
    assert codes(result).count("GL302") == 1


def test_causal_leak_is_silent_for_a_masked_lm(tmp_path):
    spec = RULES["GL201"].bad.replace("the next token at every position", "the original tokens")
    assert "GL201" not in codes(lint_text(tmp_path, spec))


def test_causal_leak_uses_the_data_source(tmp_path):
    spec = RULES["GL201"].bad.replace(", doc: the next token at every position", "")
    assert "GL201" not in codes(lint_text(tmp_path, spec))
    spec += "train:\n  data: {task: reverse_digits, length: 8}\n"
    assert "GL201" in codes(lint_text(tmp_path, spec))


def test_long_rnn_length_from_the_data(tmp_path):
    spec = RULES["GL203"].bad.replace("[B, 100, 8]", "[B, T, 8]")
    assert "GL203" not in codes(lint_text(tmp_path, spec))
    spec += "train:\n  data: {task: majority, length: 64}\n"
    assert "GL203" in codes(lint_text(tmp_path, spec))


def test_large_kernel_stem_on_few_channels_is_fine(tmp_path):
    spec = RULES["GL303"].bad.replace("[B, 64, 16, 16]", "[B, 3, 16, 16]")
    assert "GL303" not in codes(lint_text(tmp_path, spec))


def test_lr_defaults_and_overrides(tmp_path):
    good = RULES["GL402"].good
    path = tmp_path / "spec.yaml"
    path.write_text(good)
    assert "GL402" not in codes(lint_file(str(path)))
    assert "GL402" in codes(lint_file(str(path), overrides={"optimizer.lr": 3.0}))


SHIFTED_LM = """\
constants: {vocab: 11, d: 32}
inputs:
  seq: {shape: [B, 17], dtype: int64}
nodes:
  tokens: {op: slice, in: seq, axis: 1, start: 0, stop: 16}
  targets: {op: slice, in: seq, axis: 1, start: 1, stop: 17}
  embed: {op: embedding, in: tokens, num: vocab, dim: d}
  pos: {op: positional_encoding, in: embed}
  attn: {op: attention, in: pos, heads: 4}
  norm: {op: add_norm, in: [pos, attn]}
  logits: {op: linear, in: norm, out: vocab}
  loss: {op: cross_entropy, in: [logits, targets]}
outputs: [logits]
losses: [loss]
"""


def test_a_shift_inside_the_graph_is_next_token_prediction(tmp_path):
    assert codes(lint_text(tmp_path, SHIFTED_LM)) == ["GL201"]
    fixed = SHIFTED_LM.replace("heads: 4}", "heads: 4, causal: true}")
    assert codes(lint_text(tmp_path, fixed)) == []
    assert codes(lint_text(tmp_path, fixed.replace("out: vocab", "out: 10"))) == ["GL105"]


def test_vocab_mismatch_leaves_taggers_alone(tmp_path):
    tagger = RULES["GL105"].bad.replace("targets: {shape: [B, T], dtype: int64, doc: the next token "
                                        "at every position}", "targets: {shape: [B, T], dtype: int64, "
                                        "doc: one tag per token}")
    assert "GL105" not in codes(lint_text(tmp_path, tagger))
