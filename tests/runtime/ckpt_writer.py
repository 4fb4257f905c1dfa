"""A checkpoint writer that the atomicity tests kill with SIGKILL.

usage: ckpt_writer.py DIR stage NAME   -- save #1, then during save #2 stop at stage NAME
       ckpt_writer.py DIR loop         -- save #1, #2, ... of large arrays until killed
Checkpoint #k holds arrays filled with k and state {"step": k}, so a reader can tell
whether what it loads is one complete checkpoint.
"""

import sys
import time

import numpy as np
from graphc.runtime import checkpoint


def contents(k: int, size: int):
    params = {"w": np.full(size, k, np.float32), "b": np.full(7, k, np.float32)}
    return params, {"m/w": np.full(size, k, np.float32)}, {"step": k}


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "stage":
        stage = sys.argv[3]
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
