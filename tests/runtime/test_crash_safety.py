"""SIGKILL `graphc train` (checkpoint_every=1) at random moments, 22 times against one run:
the last checkpoint always loads, and resuming after every kill ends where a run that was
never killed ends, bit for bit (benchmarks/crash_safety.py does more kills)."""

import pytest

from benchmarks.crash_safety import crash_test


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_checkpoint(tmp_path):
    report = crash_test(tmp_path, kills=20, cli_kills=2, steps=200, seed=1)
    assert report["kills"] + report["cli_kills"] >= 22
    assert report["advanced"] >= 5, report  # kills landed mid-training, not only at start-up
