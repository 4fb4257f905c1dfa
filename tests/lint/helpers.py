"""Lint a spec written to a temporary file, with the default configuration."""

from pathlib import Path

from graphc.lint.engine import Config, LintResult, lint_file


def lint_text(tmp_path: Path, text: str, name: str = "spec.yaml", **config) -> LintResult:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return lint_file(str(path), config=Config(**config))


def codes(result: LintResult) -> list[str]:
    return [d.code for d in result.diagnostics]
