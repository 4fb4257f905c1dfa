"""Optimizers over a dict of named float32 arrays, updated in place.

``train.optimizer`` keys::

    {name: sgd,   lr: 0.1,  momentum: 0.0, weight_decay: 0.0}
    {name: adam,  lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.0}
    {name: adamw, lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01}

* SGD: ``w <- w - lr * g``. With ``momentum: a`` it is the notes' form
  ``w_{t+1} = w_t - lr_t * g_t + a * (w_t - w_{t-1})``: the velocity ``v = w_t - w_{t-1}`` is
  kept, ``v <- a * v - lr_t * g_t``, ``w <- w + v``. This is classic (Polyak) momentum; with a
  constant lr it equals PyTorch's ``b <- a*b + g; w <- w - lr*b`` with ``v = -lr*b``.
* Adam: bias-corrected moments; ``weight_decay`` is L2, added to the gradient (as in SGD).
* AdamW: decoupled weight decay, ``w <- w - lr*wd*w`` before the Adam step (Loshchilov & Hutter).

Weight decay only touches parameters whose ParamSpec has ``decay=True`` (not biases, norm
gains, ...). Parameters with ``trainable=False`` (buffers) or frozen by ``train.freeze`` are never
updated. ``lr`` is the base rate; the schedule passes the current rate to :meth:`step`.
State round-trips through ``state_dict()`` -> (arrays, scalars) for safetensors + JSON.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .config import as_number, check_keys
from .errors import CheckpointError, ConfigError


class Optimizer(ABC):
    name = "optimizer"
    defaults: dict = {}

    def __init__(self, decay: dict[str, bool], **options) -> None:
        self.decay = decay  # name -> apply weight decay; names not here are not updated
        self.options = {**self.defaults, **options}
        self.lr = float(self.options["lr"])
        self.weight_decay = float(self.options.get("weight_decay", 0.0))
        self.t = 0  # steps taken
        self.state: dict[str, np.ndarray] = {}  # "<slot>/<param>" -> array

    def slot(self, kind: str, name: str, like: np.ndarray) -> np.ndarray:
        key = f"{kind}/{name}"
        if key not in self.state:
            self.state[key] = np.zeros_like(like, dtype=np.float32)
        return self.state[key]

    def step(
        self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float | None = None
    ) -> None:
        lr = self.lr if lr is None else float(lr)
        self.t += 1
        for name, decays in self.decay.items():
            g = grads.get(name)
            if g is None:
                continue
            self.update(
                name,
                params[name],
                np.asarray(g, np.float32),
                lr,
                self.weight_decay if decays else 0.0,
            )

    @abstractmethod
    def update(self, name: str, w: np.ndarray, g: np.ndarray, lr: float, wd: float) -> None:
        """Update parameter ``w`` in place from its gradient ``g``."""

    def kernel_calls(self, w: np.ndarray) -> list:
        """(njit kernel, arguments) of the calls `update` makes for a float32 parameter like
        `w`, so that a cold start compiles them with the model's (`kernel_jobs`)."""
        return []

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        return dict(self.state), {"name": self.name, "t": self.t}

    def load_state_dict(self, arrays: dict[str, np.ndarray], scalars: dict) -> None:
        if scalars.get("name") != self.name:
            raise CheckpointError(
                f"the checkpoint's optimizer is {scalars.get('name')!r}, but the run uses {self.name!r}"
            )
        self.t = int(scalars["t"])
        self.state = {k: np.array(v, np.float32) for k, v in arrays.items()}


class SGD(Optimizer):
    name = "sgd"
    defaults = {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}

    def update(self, name, w, g, lr, wd):
        if wd:
            g = g + np.float32(wd) * w
        a = float(self.options["momentum"])
        if a == 0.0:
            w -= np.float32(lr) * g
            return
        v = self.slot("velocity", name, w)  # w_t - w_{t-1}
        v *= np.float32(a)
        v -= np.float32(lr) * g
        w += v


class Adam(Optimizer):
    name = "adam"
    defaults = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
    decoupled = False

    def update(self, name, w, g, lr, wd):
        m = self.slot("m", name, w)
        v = self.slot("v", name, w)
        if w.dtype == np.float32 and w.flags.c_contiguous and w.flags.writeable:
            # one fused pass on the kernels' thread pool; the same float32 arithmetic as below
            kernel, args = self._fused(w, g, m, v, lr, wd)
            kernel(*args)
            return
        b1, b2, eps = self._hyper()
        if wd and self.decoupled:
            w *= np.float32(1.0 - lr * wd)
        elif wd:
            g = g + np.float32(wd) * w
        m *= np.float32(b1)
        m += np.float32(1 - b1) * g
        v *= np.float32(b2)
        v += np.float32(1 - b2) * g * g
        m_hat = m / np.float32(1 - b1**self.t)
        v_hat = v / np.float32(1 - b2**self.t)
        w -= np.float32(lr) * m_hat / (np.sqrt(v_hat) + np.float32(eps))

    def _hyper(self) -> tuple[float, float, float]:
        b1, b2 = (float(b) for b in self.options["betas"])
        return b1, b2, float(self.options["eps"])

    def _fused(self, w, g, m, v, lr, wd):
        """The fused kernel and its arguments for one float32, C-contiguous parameter."""
        from graphc.kernels.optim import adam_update

        b1, b2, eps = self._hyper()
        flat = np.ascontiguousarray(g, np.float32).reshape(-1)
        args = (w.reshape(-1), flat, m.reshape(-1), v.reshape(-1), lr, b1, b2, eps, wd, self.decoupled,
                1 - b1**self.t, 1 - b2**self.t)  # fmt: skip
        return adam_update, args

    def kernel_calls(self, w):
        stand_in = np.zeros_like(w)
        return [self._fused(w, stand_in, stand_in, stand_in, self.lr, self.weight_decay)]


class AdamW(Adam):
    name = "adamw"
    defaults = {**Adam.defaults, "weight_decay": 0.01}
    decoupled = True


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW)}


def make_optimizer(section: dict, decay: dict[str, bool]) -> Optimizer:
    """The optimizer for ``train.optimizer`` over the parameters in ``decay`` (name -> bool)."""
    section = dict(section)
    name = section.pop("name")
    if name == "momentum":  # shorthand: SGD with momentum 0.9
        name = "sgd"
        section.setdefault("momentum", 0.9)
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer `{name}`; available: {', '.join(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    where = f"train.optimizer ({name})"
    check_keys(section, list(cls.defaults), where)
    for key in ("lr", "momentum", "weight_decay", "eps"):
        if key in section:
            section[key] = as_number(section[key], f"{where}.{key}", minimum=0)
    if "betas" in section:
        betas = section["betas"]
        if (
            not isinstance(betas, list | tuple)
            or len(betas) != 2
            or not all(0 <= as_number(b, f"{where}.betas") < 1 for b in betas)
        ):
            raise ConfigError(f"{where}.betas must be two numbers in [0, 1), got {betas!r}")
    if section.get("momentum", 0.0) >= 1:
        raise ConfigError(f"{where}.momentum must be < 1, got {section['momentum']}")
    return cls(decay, **section)


def kernel_jobs(optimizers) -> list:
    """The njit kernels an optimizer step calls (the gradient norm's and each optimizer's fused
    update) as jobs for graphc.compiler.warm, typed from the calls on a stand-in parameter."""
    from graphc.kernels.optim import sum_of_squares
    from graphc.kernels.precompile import job_for

    w = np.zeros(1, np.float32)
    calls = [(sum_of_squares, (w,)), *(call for opt in optimizers for call in opt.kernel_calls(w))]
    return [job_for(kernel, args) for kernel, args in calls]


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """sqrt(sum of squares) over all gradients, accumulated in float64.

    (An elementwise square-and-sum: ``np.dot`` on float64 copies goes through BLAS threads and
    measured ~20x slower for the many small arrays of a model.)
    """
    from graphc.kernels.optim import sum_of_squares  # one pass, no float64 copy

    total = 0.0
    for g in grads.values():
        if g.dtype == np.float32 and g.flags.c_contiguous:
            total += float(sum_of_squares(g.reshape(-1)))
        else:
            total += float(np.square(g, dtype=np.float64).sum())
    return float(np.sqrt(total))


def clip_by_global_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    Returns the norm before clipping (what gets logged).
    """
    norm = global_norm(grads)
    if np.isfinite(norm) and norm > max_norm:
        scale = np.float32(max_norm / (norm + 1e-6))
        for g in grads.values():
            g *= scale
    return norm
