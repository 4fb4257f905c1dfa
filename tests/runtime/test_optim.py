import numpy as np
import pytest

from graphc.runtime.errors import CheckpointError, ConfigError
from graphc.runtime.optim import clip_by_global_norm, global_norm, make_optimizer


def _params():
    return {"w": np.array([1.0, -2.0, 3.5], np.float32), "b": np.array([0.5], np.float32)}


GRADS = [
    {"w": np.array([0.1, 0.25, -0.3], np.float32), "b": np.array([1.0], np.float32)},
    {"w": np.array([-0.4, 0.0, 0.5], np.float32), "b": np.array([-2.0], np.float32)},
    {"w": np.array([0.3, -0.1, 0.2], np.float32), "b": np.array([0.5], np.float32)},
]
DECAY = {"w": True, "b": False}


def test_sgd_plain_with_l2_only_on_decayed_params():
    p = _params()
    opt = make_optimizer({"name": "sgd", "lr": 0.1, "weight_decay": 0.5}, DECAY)
    opt.step(p, GRADS[0])
    w0, b0 = _params()["w"], _params()["b"]
    np.testing.assert_allclose(p["w"], w0 - 0.1 * (GRADS[0]["w"] + 0.5 * w0), rtol=1e-6)
    np.testing.assert_allclose(p["b"], b0 - 0.1 * GRADS[0]["b"], rtol=1e-6)


def test_momentum_is_the_notes_form_even_when_lr_changes():
    # w_{t+1} = w_t - lr_t * g_t + a * (w_t - w_{t-1}), with w_{-1} = w_0
    a, lrs = 0.9, [0.1, 0.05, 0.2]
    p = _params()
    opt = make_optimizer({"name": "sgd", "lr": 0.1, "momentum": a}, DECAY)
    ref = {k: v.astype(np.float64) for k, v in _params().items()}
    prev = {k: v.copy() for k, v in ref.items()}
    for g, lr in zip(GRADS, lrs, strict=True):
        opt.step(p, g, lr)
        new = {k: ref[k] - lr * g[k] + a * (ref[k] - prev[k]) for k in ref}
        prev, ref = ref, new
        for k in ref:
            np.testing.assert_allclose(p[k], ref[k], rtol=1e-6)


def _adam_reference(decoupled, wd):
    b1, b2, eps, lr = 0.9, 0.99, 1e-8, 0.01
    w = {k: v.astype(np.float64) for k, v in _params().items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for t, g in enumerate(GRADS, start=1):
        for k in w:
            d = wd if DECAY[k] else 0.0
            gk = g[k].astype(np.float64)
            if decoupled:
                w[k] = w[k] * (1 - lr * d)
            else:
                gk = gk + d * w[k]
            m[k] = b1 * m[k] + (1 - b1) * gk
            v[k] = b2 * v[k] + (1 - b2) * gk**2
            w[k] = w[k] - lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    return w


@pytest.mark.parametrize("name,decoupled", [("adam", False), ("adamw", True)])
def test_adam_and_adamw_match_hand_computed_updates(name, decoupled):
    p = _params()
    opt = make_optimizer(
        {"name": name, "lr": 0.01, "betas": [0.9, 0.99], "weight_decay": 0.1}, DECAY
    )
    for g in GRADS:
        opt.step(p, g)
    ref = _adam_reference(decoupled, 0.1)
    for k in ref:
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-5)
    other = _adam_reference(not decoupled, 0.1)
    assert not np.allclose(p["w"], other["w"], rtol=1e-5)  # the two decays really differ


def test_state_dict_round_trip_continues_identically():
    a, b = _params(), _params()
    opt_a = make_optimizer({"name": "adamw", "lr": 0.01}, DECAY)
    opt_a.step(a, GRADS[0])
    arrays, scalars = opt_a.state_dict()
    b = {k: v.copy() for k, v in a.items()}
    opt_b = make_optimizer({"name": "adamw", "lr": 0.01}, DECAY)
    opt_b.load_state_dict(arrays, scalars)
    for g in GRADS[1:]:
        opt_a.step(a, g)
        opt_b.step(b, g)
    for k in a:
        assert np.array_equal(a[k], b[k])
    with pytest.raises(CheckpointError, match="adamw"):
        make_optimizer({"name": "sgd"}, DECAY).load_state_dict(arrays, scalars)


def test_params_missing_from_the_decay_map_are_not_updated():
    p = _params()
    make_optimizer({"name": "sgd", "lr": 1.0}, {"w": True}).step(p, GRADS[0])
    assert np.array_equal(p["b"], _params()["b"])
    assert not np.array_equal(p["w"], _params()["w"])


def test_clip_by_global_norm():
    g = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([4.0], np.float32)}
    assert global_norm(g) == pytest.approx(5.0)
    before = clip_by_global_norm(g, 1.0)
    assert before == pytest.approx(5.0)
    assert global_norm(g) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g["a"], [0.6, 0.0], rtol=1e-5)
    small = {"a": np.array([0.3], np.float32)}
    clip_by_global_norm(small, 1.0)
    assert small["a"][0] == np.float32(0.3)


@pytest.mark.parametrize(
    "section,match",
    [
        ({"name": "adagrad"}, "unknown optimizer"),
        ({"name": "adam", "lr": "fast"}, "lr must be a number"),
        ({"name": "adam", "betas": [0.9]}, "betas"),
        ({"name": "sgd", "momentum": 1.5}, "momentum must be < 1"),
        ({"name": "sgd", "betas": [0.9, 0.9]}, "unknown key `betas`"),
    ],
)
def test_bad_optimizer_config(section, match):
    with pytest.raises(ConfigError, match=match):
        make_optimizer(section, DECAY)


def test_momentum_shorthand():
    opt = make_optimizer({"name": "momentum", "lr": 0.1}, DECAY)
    assert opt.name == "sgd" and opt.options["momentum"] == 0.9


@pytest.mark.parametrize("name, wd", [("adam", 0.0), ("adam", 0.1), ("adamw", 0.01)])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_fused_adam_kernel_gives_numpys_bits(name, wd, threads):
    """Contiguous float32 params take the one-pass kernel (graphc.kernels.optim); a strided
    param takes the NumPy form. Both must compute the same float32 numbers, at any thread
    count (the kernel splits 100,000 elements over the threads)."""
    from graphc.kernels.threads import configure, set_threads

    rng = np.random.default_rng(3)
    base = rng.standard_normal(100_000).astype(np.float32)
    grads = [rng.standard_normal(base.size).astype(np.float32) for _ in range(4)]
    fused = {"w": base.copy()}
    strided = {"w": np.repeat(base, 2)[::2]}  # the same values, not contiguous
    assert not strided["w"].flags.c_contiguous
    set_threads(threads)
    try:
        for params in (fused, strided):
            opt = make_optimizer({"name": name, "lr": 0.01, "weight_decay": wd}, {"w": True})
            for g in grads:
                opt.step(params, {"w": g})
    finally:
        configure()
    assert not np.array_equal(fused["w"], base)
    assert np.array_equal(fused["w"], strided["w"])


def test_global_norm_is_accumulated_in_float64():
    rng = np.random.default_rng(4)
    grads = {"a": rng.standard_normal(100_000).astype(np.float32) * 1e3,
             "b": rng.standard_normal((300, 7)).astype(np.float32)[:, ::2]}  # not contiguous
    expected = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
    assert global_norm(grads) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_kernel_jobs_are_what_an_optimizer_step_compiles(name):
    """A cold start compiles `kernel_jobs` before the first step (graphc.compiler.warm); each
    must be a specialisation the step really calls, or the step compiles again at its call."""
    from graphc.kernels.precompile import dispatcher
    from graphc.runtime.optim import kernel_jobs

    opt = make_optimizer({"name": name, "lr": 0.01, "weight_decay": 0.1}, DECAY)
    jobs = kernel_jobs([opt])
    assert [j.name for j in jobs] == ["sum_of_squares", *(["adam_update"] if name != "sgd" else [])]
    params = {"w": np.ones((4, 3), np.float32), "b": np.ones(3, np.float32)}
    grads = {k: np.full_like(v, 0.5) for k, v in params.items()}
    global_norm(grads)
    opt.step(params, grads)
    for job in jobs:
        assert job.args in dispatcher(job).overloads, (job.name, job.args, list(dispatcher(job).overloads))
