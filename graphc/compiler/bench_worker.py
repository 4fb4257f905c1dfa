"""One measured run for `graphc bench`: start, compile, first step, timed steps, peak memory.

Run as a subprocess so that "cold" (empty Numba and graphc caches) and "cached" starts are real
process starts: `python -m graphc.compiler.bench_worker SPEC '{"B": 64, "T": 16}' STEPS
'{"hidden": 32}' fuse`. The model comes the way `graphc train` gets it (graphc.compiler.saved's
`model_for`): restored from the saved compiled models when an earlier run compiled the same
spec, else compiled and saved. The synthetic batch is the benchmark's own data, not a
user's start: the time it takes is left out of the first step's.
"""

import json
import resource
import sys
import time

t_start = time.perf_counter()


def _front_end(spec: str, overrides: dict):
    from graphc.compiler import CompileError
    from graphc.pipeline import analyze

    analysis = analyze(spec, overrides)
    if not analysis.ok:
        raise CompileError(analysis.diagnostics)
    return analysis


def main() -> None:
    spec, dims, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    overrides = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    fuse = sys.argv[5] != "no-fuse" if len(sys.argv) > 5 else True
    from graphc.compiler import saved

    model = saved.model_for(spec, overrides, fuse, _front_end).model
    restored = "graph" not in model.__dict__  # (a compiled model holds its front end's graph)
    t_compiled = time.perf_counter()
    from graphc.compiler.checks import synthetic_batch, time_steps

    params = model.init_params(0)
    t0 = time.perf_counter()
    batch = synthetic_batch(model, dims)
    t_batch = time.perf_counter() - t0
    model.backward(model.forward(params, batch, training=True, seed=0))
    t_first = time.perf_counter()
    timing = time_steps(model, dims, steps=steps) if steps else {}
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    arenas = [a for stack in model._arenas.free.values() for a in stack]
    plan_mb = max((a.nbytes for a in arenas), default=0) / 2**20
    print(json.dumps({"compile_s": t_compiled - t_start, "first_step_s": t_first - t_start - t_batch,
                      "restored": restored, **{f"step_{k}": v for k, v in timing.items()},
                      "peak_rss_mb": peak_kb / 1024, "buffer_plan_mb": plan_mb}))


if __name__ == "__main__":
    main()
