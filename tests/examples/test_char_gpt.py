"""examples/char_gpt.yaml: a character-level GPT on the public-domain text shipped in
examples/data/ (with its attribution). Checked and linted; a short training run lowers the
held-out loss well below the uniform guess, and `graphc sample --prompt` continues a prompt
with characters of the text."""

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphc.cli import main
from graphc.lint.engine import lint_file
from graphc.pipeline import analyze

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "char_gpt.yaml"
TEXT = ROOT / "examples" / "data" / "nettle-manual.txt"


def test_the_text_ships_with_its_attribution():
    text = TEXT.read_text(encoding="utf-8")
    assert 100_000 < len(text) < 400_000
    license_ = (TEXT.parent / "NETTLE-MANUAL-LICENSE.md").read_text(encoding="utf-8")
    assert "placed in the public domain" in license_ and "Niels Möller" in license_


def test_spec_checks_lints_clean_and_fits_the_vocabulary():
    a = analyze(SPEC)
    assert a.ok and not a.diagnostics, [(d.code, d.message) for d in a.diagnostics]
    assert a.graph.constants["vocab"] == len(set(TEXT.read_text(encoding="utf-8")))
    assert a.graph.ties == {"logits.weight": "embed.weight"}
    assert not lint_file(str(SPEC)).diagnostics


@pytest.mark.slow
def test_a_short_run_learns_and_samples(tmp_path):
    """80 steps (about 10-20 s on a busy 2-core machine): the held-out loss falls from the
    uniform ln(93) ≈ 4.5 to below 3.3 nats, and sampling continues the prompt."""
    import graphc
    from graphc.runtime import train

    model = graphc.compile(SPEC)
    summary = train(model, out_dir=tmp_path / "run", overrides={"steps": 80, "eval_every": 80},
                    progress="none", base_dir=SPEC.parent)
    val = summary["metrics"]["val_loss"]
    assert val < 3.3 < math.log(93)
    r = CliRunner().invoke(main, ["sample", str(SPEC), "--checkpoint", str(tmp_path / "run"),
                                  "--prompt", "The hash ", "--length", "40"])
    assert r.exit_code == 0, r.output
    out = r.stdout.rstrip("\n")
    assert out.startswith("The hash ") and len(out) >= len("The hash ") + 40 - 1
    assert set(out) <= set(TEXT.read_text(encoding="utf-8"))
