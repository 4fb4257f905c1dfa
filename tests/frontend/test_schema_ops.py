"""The JSON Schema's node part: unknown ops are rejected (an editor flags and completes op
names), block arguments may still name an op inside a block, and every shipped spec passes."""

from __future__ import annotations

import pytest
import yaml

from graphc.ops import OPS
from graphc.schema import spec_schema
from tests.conftest import ROOT, schema_validator

SPECS = sorted([*(ROOT / "specs").glob("*.yaml"), *(ROOT / "examples").glob("*.yaml")])
SCHEMA = spec_schema()


def valid(doc) -> bool:
    return schema_validator().is_valid(doc)


def spec(nodes: dict, blocks: dict | None = None) -> dict:
    doc = {"graphc": 1, "inputs": {"x": ["B", 4]}, "nodes": nodes, "outputs": ["out"]}
    return {**doc, "blocks": blocks} if blocks else doc


@pytest.mark.parametrize("path", SPECS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_spec_passes(path):
    schema_validator().validate(yaml.safe_load(path.read_text()))


def test_unknown_op_is_rejected_at_the_top_level():
    assert valid(spec({"out": {"op": "linear", "in": "x", "out": 3}}))
    assert not valid(spec({"out": {"op": "lienar", "in": "x", "out": 3}}))
    assert not valid(spec({"out": {"op": "swishy", "in": "x"}}))


def test_op_names_are_an_enum_editors_can_complete():
    assert SCHEMA["$defs"]["node"]["properties"]["op"]["enum"] == sorted(OPS)


def test_block_argument_may_name_the_op_inside_a_block():
    block = {"args": {"act": "relu"}, "inputs": ["h"], "nodes": {"a": {"op": "act", "in": "h"}},
             "outputs": ["a"]}
    assert valid(spec({"out": {"block": "b", "in": "x", "act": "tanh"}}, {"b": block}))
    # but a known op inside a block still takes only its own attributes
    block["nodes"]["a"] = {"op": "relu", "in": "h", "kernel": 3}
    assert not valid(spec({"out": {"block": "b", "in": "x"}}, {"b": block}))


def test_unknown_attribute_and_missing_required_attribute_are_rejected():
    assert not valid(spec({"out": {"op": "linear", "in": "x", "out_features": 3}}))
    assert not valid(spec({"out": {"op": "linear", "in": "x"}}))
