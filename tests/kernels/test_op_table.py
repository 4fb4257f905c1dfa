"""The op table (tests/op_cases.py) covers every registered op, and each row is well formed:
its one-node spec passes the front end, its lowering gives every kernel attribute, and each
op has a row with a torch equivalent."""

from graphc.ops import OPS
from tests.op_cases import ROWS, case


def test_every_registered_op_has_a_row():
    covered = {r.op for r in ROWS}
    missing = sorted(set(OPS) - covered)
    assert not missing, (f"ops in graphc.ops.OPS without a row in tests/op_cases.py: {', '.join(missing)} "
                         "(see docs/adding-an-op.md)")
    unknown = sorted(covered - set(OPS))
    assert not unknown, f"rows in tests/op_cases.py for ops that are not registered: {', '.join(unknown)}"


def test_row_ids_are_unique():
    keys = [r.key for r in ROWS]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_every_row_builds_and_lowers_every_kernel_attribute():
    for r in ROWS:
        c = case(r)  # the front end accepted the row's spec
        assert set(c.lowered) == set(c.op.kernel.attrs), r.key
        assert len(c.outputs) == len(c.node.outputs), r.key


def test_every_op_has_a_torch_equivalent():
    missing = sorted({r.op for r in ROWS} - {r.op for r in ROWS if r.torch is not None})
    assert not missing, f"ops without any row that has a torch equivalent: {missing}"
    for r in ROWS:
        assert r.torch is not None or r.note, f"{r.key}: say in `note` why there is no torch equivalent"
