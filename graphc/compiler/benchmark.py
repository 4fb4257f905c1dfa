"""What `graphc bench` measures: a cold start (empty Numba and graphc caches), a cached start, step
time and peak memory. Each measurement is a fresh process (graphc.compiler.bench_worker), so that
"cold" and "cached" are real process starts; this module runs them and gathers the numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile


class BenchmarkError(RuntimeError):
    """A measured run failed; the message ends with the tail of its stderr."""


def _worker(spec: str, dims: dict[str, int], steps: int, overrides: dict, env: dict, fuse: bool) -> dict:
    cmd = [sys.executable, "-m", "graphc.compiler.bench_worker", spec, json.dumps(dims), str(steps),
           json.dumps(overrides), "fuse" if fuse else "no-fuse"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise BenchmarkError(f"benchmark run failed:\n{r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_benchmark(spec: str, dims: dict[str, int], steps: int, overrides: dict | None = None,
                  cold: bool = True, fuse: bool = True) -> dict:
    """Measure `spec` at `dims` with the front end's `overrides` (constants and dims, as
    `graphc train` passes them): {"spec", "dims", "cold_start_s"
    (if `cold`), "cached_start_s", "cached_start_restored", "step_median_ms", "step_best_ms",
    "peak_rss_mb", "buffer_plan_mb"}.

    With `cold`, a first run fills a fresh temporary cache and a second starts from it; without,
    one run uses the user's caches as they are. A run gets its model as `graphc train` does:
    restored from the saved compiled models (`cached_start_restored`) or compiled and saved."""
    results: dict = {"spec": spec, "dims": dims}
    sets = overrides or {}
    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "GRAPHC_CACHE_DIR": cache}
        if cold:
            results["cold_start_s"] = _worker(spec, dims, 0, sets, env, fuse)["first_step_s"]
            warm = _worker(spec, dims, steps, sets, env, fuse)
        else:
            warm = _worker(spec, dims, steps, sets, {**os.environ}, fuse)
    return results | {"cached_start_s": warm["first_step_s"], "cached_start_restored": warm["restored"],
                      "step_median_ms": warm["step_median"] * 1e3,
                      "step_best_ms": warm["step_best"] * 1e3, "peak_rss_mb": warm["peak_rss_mb"],
                      "buffer_plan_mb": warm["buffer_plan_mb"]}
