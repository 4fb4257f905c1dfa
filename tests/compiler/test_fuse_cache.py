"""A generated kernel is written once to the graphc cache and compiled once: another process
imports the same module file and Numba loads its machine code from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np
from graphc.compiler import compile_spec
from graphc.compiler.checks import synthetic_batch
model = compile_spec(sys.argv[1])
params = model.init_params(0)
model.backward(model.forward(params, synthetic_batch(model, {"B": 3})))
mod = model.fused[0].module
stats = {name: getattr(mod, name).stats for name in ("_fwd32", "_bwd32")}
print(json.dumps({"file": mod.__file__,
                  "hits": sum(sum(s.cache_hits.values()) for s in stats.values()),
                  "misses": sum(sum(s.cache_misses.values()) for s in stats.values())}))
"""

SPEC = """
inputs: {x: [B, 5]}
nodes:
  fc: {op: linear, in: x, out: 5}
  h: {op: tanh, in: fc}
  hh: {op: mul, in: [h, fc]}
  loss: {op: mse, in: [hh, x]}
losses: [loss]
"""


def test_a_new_group_compiles_once_and_loads_from_the_cache_in_another_process(tmp_path):
    spec = tmp_path / "cached.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "graphc"), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(spec)], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["file"] == warm["file"] and cold["file"].startswith(str(tmp_path / "graphc"))
    assert cold["misses"] == 2 and cold["hits"] == 0
    assert warm["hits"] == 2 and warm["misses"] == 0
