import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
REFERENCE_SPECS = sorted(SPECS.glob("*.yaml"))


@pytest.fixture
def write_spec(tmp_path):
    """Write spec text to a file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@functools.cache
def schema_validator():
    """One validator of `graphc schema` for the whole run: building one checks the (large)
    schema, which `jsonschema.validate` would redo on every call."""
    import jsonschema

    from graphc.schema import spec_schema

    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)
