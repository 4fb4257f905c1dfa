"""A checkpoint writer that the atomicity tests kill with SIGKILL.

usage: ckpt_writer.py RUNTIME_DIR DIR stage NAME  -- save #1, then stop at stage NAME of save #2
       ckpt_writer.py RUNTIME_DIR DIR loop        -- save #1, #2, ... of large arrays until killed
Checkpoint #k holds arrays filled with k and state {"step": k}, so a reader can tell
whether what it loads is one complete checkpoint.
"""

import importlib
import sys
import time
import types

import numpy as np

# Import runtime/checkpoint.py (and its errors module) under a stand-in package: `graphc`'s own
# __init__ pulls in the whole front end, a second of start-up per writer for nothing.
_pkg = types.ModuleType("rt")
_pkg.__path__ = [sys.argv[1]]
sys.modules["rt"] = _pkg
checkpoint = importlib.import_module("rt.checkpoint")


def contents(k: int, size: int):
    params = {"w": np.full(size, k, np.float32), "b": np.full(7, k, np.float32)}
    return params, {"m/w": np.full(size, k, np.float32)}, {"step": k}


def main() -> None:
    path, mode = sys.argv[2], sys.argv[3]
    if mode == "stage":
        stage = sys.argv[4]
        checkpoint.save_checkpoint(path, *contents(1, 1000))

        def hook(name: str) -> None:
            if name == stage:
                print("AT", name, flush=True)
                time.sleep(60)

        checkpoint._stage_hook = hook
        checkpoint.save_checkpoint(path, *contents(2, 1000))
        print("DONE", flush=True)
    else:
        k = 1
        while True:
            checkpoint.save_checkpoint(path, *contents(k, 1_000_000))
            print("saved", k, flush=True)
            k += 1


if __name__ == "__main__":
    main()
