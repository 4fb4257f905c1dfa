"""The spec's `compile:` section: `fuse: false` turns the fusion pass off for that spec."""

from graphc.pipeline import Analysis, analyze, run

SPEC = """
inputs: {x: [B, 8]}
nodes:
  a: {op: tanh, in: x}
  b: {op: mul, in: [a, x]}
  c: {op: sigmoid, in: b}
  loss: {op: mean, in: c}
losses: [loss]
"""


def _fused_calls(path) -> list[str]:
    a = analyze(path)
    assert a.ok, a.diagnostics
    done = run(Analysis(a.file, graph=a.graph), start="autodiff", until="fuse")
    return [c.kernel for c in done.program.forward]


def test_fuse_false_keeps_one_call_per_op(write_spec):
    fused = _fused_calls(write_spec(SPEC))
    plain = _fused_calls(write_spec(SPEC + "compile: {fuse: false}\n", "plain.yaml"))
    assert len(plain) == 4 and len(fused) < len(plain)


def test_bad_compile_section_is_a_diagnostic(write_spec):
    a = analyze(write_spec(SPEC + "compile: {fuse: 3, fusion: true}\n"))
    messages = [(d.code, d.message, d.span.line if d.span else None) for d in a.errors]
    assert ("GC005", "compile.fuse must be true or false, found 3", 9) in messages
    assert any(m.startswith("unknown key `fusion`") and line == 9 for _, m, line in messages)
