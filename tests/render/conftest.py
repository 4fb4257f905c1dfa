from __future__ import annotations

import pytest

from .helpers import invoke_render


@pytest.fixture
def render(tmp_path):
    """render(spec, "name.svg", *options) → (click result, output path under tmp_path)."""

    def run(spec, name: str = "out.svg", *args: str):
        out = tmp_path / name
        return invoke_render(spec, out, *args), out

    return run
