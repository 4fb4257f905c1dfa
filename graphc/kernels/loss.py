"""Loss kernels: cross_entropy, bce_with_logits, mse, hinge, kl_div.

Every loss returns shape (1,) (never 0-d) in the input dtype. The backward scales by the
incoming scalar cotangent ``g_out[0]``. Log-sum-exp always subtracts the row max, so logits
of +-1e4 stay finite. Non-differentiable inputs (int targets, masks, bce targets) get a
zero-size gradient.

Every loss takes `reduction` with PyTorch's meaning: "mean" (the default) or "sum" over the
elements (rows for the class losses); kl_div also "batchmean" (the sum over everything divided
by the first axis, B, whatever the rank) and hinge divides each row by the number of classes,
as torch's multi_margin_loss does. The kernels take the reduction as its index in
`REDUCTIONS` (the ops lower the name to it): comparing strings in njit code compiles ~1 s of
Numba's string machinery into every loss.

cross_entropy averages over counted positions (target != ignore_index, weighted by the
optional mask); when nothing is counted it returns 0 with zero gradient instead of torch's
NaN, so a fully padded batch cannot poison training. It saves the softmax probabilities
(logits' shape) so its backward needs no exp.
"""

import math

import numba
import numpy as np

from graphc.kernels.vmath import vexp

REDUCTIONS = ("mean", "sum", "batchmean")
MEAN, SUM, BATCHMEAN = range(len(REDUCTIONS))


@numba.njit(cache=True)
def _row_logsumexp(x2, r, inv_temp):
    c = x2.shape[1]
    m = -np.inf
    for j in range(c):
        m = max(m, x2[r, j] * inv_temp)
    s = 0.0
    for j in range(c):
        s += math.exp(x2[r, j] * inv_temp - m)
    return m + math.log(s)


# --------------------------------------------------------------------------- cross_entropy
@numba.njit(cache=True)
def _ce_weights(tf, mf, ignore_index, n_cls):
    n = tf.size
    w = np.zeros(n, dtype=np.float64)
    for r in range(n):
        y = tf[r]
        if y == ignore_index:
            continue
        if y < 0 or y >= n_cls:
            raise IndexError("cross_entropy: target class out of range")
        w[r] = mf[r] if mf.size > 0 else 1.0
    return w


@numba.njit(cache=True)
def _softmax_lse(x2):
    """Row softmax (in x's dtype) and row log-sum-exp (float64), from one vectorised exp."""
    n, c = x2.shape
    m = np.empty(n, dtype=x2.dtype)
    sh = np.empty_like(x2)
    for r in range(n):
        mr = x2[r, 0]
        for j in range(1, c):
            mr = max(mr, x2[r, j])
        m[r] = mr
        for j in range(c):
            sh[r, j] = x2[r, j] - mr
    p = np.empty_like(sh)
    vexp(sh.reshape(-1), p.reshape(-1))
    lse = np.empty(n, dtype=np.float64)
    for r in range(n):
        s = 0.0
        for j in range(c):
            s += p[r, j]
        lse[r] = m[r] + math.log(s)
        inv = 1.0 / s
        for j in range(c):
            p[r, j] *= inv
    return p, lse


@numba.njit(cache=True)
def cross_entropy_fwd(logits, target, mask, ignore_index, label_smoothing, reduction, out=None):
    # Saves the softmax probabilities: the backward is then exp-free.
    n_cls = logits.shape[-1]
    x2 = logits.reshape(-1, n_cls)
    tf = target.reshape(-1)
    w = _ce_weights(tf, mask.reshape(-1), ignore_index, n_cls)
    probs, lse = _softmax_lse(x2)
    total = 0.0
    den = 0.0
    eps = label_smoothing
    for r in range(x2.shape[0]):
        if w[r] == 0.0:
            continue
        nll = lse[r] - x2[r, tf[r]]
        if eps > 0.0:
            mean_x = 0.0
            for j in range(n_cls):
                mean_x += x2[r, j]
            # smoothing term: mean over classes of -log p_j
            nll = (1.0 - eps) * nll + eps * (lse[r] - mean_x / n_cls)
        total += w[r] * nll
        den += w[r]
    if out is None:
        out = np.empty(1, dtype=logits.dtype)
    if reduction == SUM:
        out[0] = total
    else:
        out[0] = total / den if den > 0.0 else 0.0
    return out, probs.reshape(logits.shape)


@numba.njit(cache=True)
def cross_entropy_bwd(
    g_out, logits, target, mask, ignore_index, label_smoothing, reduction, saved0, out, into_logits=None
):
    n_cls = logits.shape[-1]
    p2 = saved0.reshape(-1, n_cls)
    tf = target.reshape(-1)
    w = _ce_weights(tf, mask.reshape(-1), ignore_index, n_cls)
    den = w.sum() if reduction != SUM else 1.0
    if into_logits is None:
        into_logits = np.empty_like(logits)
    gx2 = into_logits.reshape(-1, n_cls)
    eps = label_smoothing
    for r in range(p2.shape[0]):
        if not den > 0.0 or w[r] == 0.0:  # as the forward: nothing counted, loss 0, gradient 0
            gx2[r, :] = 0.0
            continue
        k = g_out[0] * w[r] / den
        for j in range(n_cls):
            gx2[r, j] = k * (p2[r, j] - eps / n_cls)
        gx2[r, tf[r]] -= k * (1.0 - eps)
    z = np.zeros(0, dtype=logits.dtype)
    return into_logits, z, z.copy()


# --------------------------------------------------------------------------- bce_with_logits
@numba.njit(cache=True)
def bce_with_logits_fwd(logits, target, reduction, out=None):
    xf = logits.reshape(-1)
    tf = target.reshape(-1)
    s = 0.0
    for i in range(xf.size):
        x = xf[i]
        # max(x,0) - x*t + log(1 + exp(-|x|)): no overflow for any x
        s += max(x, 0.0) - x * tf[i] + math.log1p(math.exp(-abs(x)))
    if out is None:
        out = np.empty(1, dtype=logits.dtype)
    out[0] = s if reduction == SUM else s / xf.size
    return (out,)


@numba.njit(cache=True)
def bce_with_logits_bwd(g_out, logits, target, reduction, out, into_logits=None):
    xf = logits.reshape(-1)
    tf = target.reshape(-1)
    if into_logits is None:
        into_logits = np.empty_like(logits)
    gf = into_logits.reshape(-1)
    k = g_out[0] if reduction == SUM else g_out[0] / xf.size
    for i in range(xf.size):
        x = xf[i]
        if x >= 0:
            sig = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            sig = e / (1.0 + e)
        gf[i] = k * (sig - tf[i])
    return into_logits, np.zeros(0, dtype=logits.dtype)


# --------------------------------------------------------------------------- mse
@numba.njit(cache=True)
def mse_fwd(pred, target, reduction, out=None):
    pf = pred.reshape(-1)
    tf = target.reshape(-1)
    s = 0.0
    for i in range(pf.size):
        d = pf[i] - tf[i]
        s += d * d
    if out is None:
        out = np.empty(1, dtype=pred.dtype)
    out[0] = s if reduction == SUM else s / pf.size
    return (out,)


@numba.njit(cache=True)
def mse_bwd(g_out, pred, target, reduction, out, into_pred=None, into_target=None):
    pf = pred.reshape(-1)
    tf = target.reshape(-1)
    if into_pred is None:
        into_pred = np.empty_like(pred)
    if into_target is None:
        into_target = np.empty_like(target)
    gpf = into_pred.reshape(-1)
    gtf = into_target.reshape(-1)
    k = 2.0 * g_out[0] if reduction == SUM else 2.0 * g_out[0] / pf.size
    for i in range(pf.size):
        d = k * (pf[i] - tf[i])
        gpf[i] = d
        gtf[i] = -d
    return into_pred, into_target


# --------------------------------------------------------------------------- hinge
@numba.njit(cache=True)
def hinge_fwd(scores, target, margin, reduction, out=None):
    # any leading axes ([B, C], [B, T, C], ...): one row per target, like cross_entropy; each
    # row's sum over the wrong classes is divided by the number of classes (multi_margin_loss)
    c_n = scores.shape[-1]
    s2 = scores.reshape(-1, c_n)
    t2 = target.reshape(-1)
    b_n = s2.shape[0]
    s = 0.0
    for b in range(b_n):
        y = t2[b]
        if y < 0 or y >= c_n:
            raise IndexError("hinge: target class out of range")
        for j in range(c_n):
            if j != y:
                s += max(0.0, s2[b, j] - s2[b, y] + margin)
    if out is None:
        out = np.empty(1, dtype=scores.dtype)
    out[0] = s / c_n if reduction == SUM else s / (b_n * c_n)
    return (out,)


@numba.njit(cache=True)
def hinge_bwd(g_out, scores, target, margin, reduction, out, into_scores=None):
    c_n = scores.shape[-1]
    if into_scores is None:
        into_scores = np.zeros_like(scores)
    else:
        into_scores.fill(0.0)  # accumulated into below
    s2 = scores.reshape(-1, c_n)
    t2 = target.reshape(-1)
    gs = into_scores.reshape(-1, c_n)
    b_n = s2.shape[0]
    k = g_out[0] / c_n if reduction == SUM else g_out[0] / (b_n * c_n)
    for b in range(b_n):
        y = t2[b]
        for j in range(c_n):
            # subgradient 0 exactly at the kink, like torch's MultiMarginLoss
            if j != y and s2[b, j] - s2[b, y] + margin > 0.0:
                gs[b, j] += k
                gs[b, y] -= k
    return into_scores, np.zeros(0, dtype=scores.dtype)


# --------------------------------------------------------------------------- kl_div
@numba.njit(cache=True)
def _kl_divisor(student, reduction):
    """What the summed KL is divided by: B (batchmean), every element (mean) or 1 (sum)."""
    if reduction == SUM:
        return 1.0
    if reduction == MEAN:
        return float(student.size)
    return float(student.shape[0])


@numba.njit(cache=True)
def kl_div_fwd(student, teacher, temperature, reduction, out=None):
    c_n = student.shape[-1]
    s2 = student.reshape(-1, c_n)
    t2 = teacher.reshape(-1, c_n)
    n = s2.shape[0]
    inv_t = 1.0 / temperature
    total = 0.0
    for r in range(n):
        lse_s = _row_logsumexp(s2, r, inv_t)
        lse_t = _row_logsumexp(t2, r, inv_t)
        for j in range(c_n):
            log_p = t2[r, j] * inv_t - lse_t
            log_q = s2[r, j] * inv_t - lse_s
            total += math.exp(log_p) * (log_p - log_q)
    if out is None:
        out = np.empty(1, dtype=student.dtype)
    out[0] = temperature * temperature * total / _kl_divisor(student, reduction)
    return (out,)


@numba.njit(cache=True)
def kl_div_bwd(g_out, student, teacher, temperature, reduction, out, into_student=None, into_teacher=None):
    c_n = student.shape[-1]
    s2 = student.reshape(-1, c_n)
    t2 = teacher.reshape(-1, c_n)
    n = s2.shape[0]
    inv_t = 1.0 / temperature
    # d/ds = T (q - p) / N;  d/dt = T p (v - <p, v>) / N with v = log p - log q, N the divisor
    k = g_out[0] * temperature / _kl_divisor(student, reduction)
    if into_student is None:
        into_student = np.empty_like(student)
    if into_teacher is None:
        into_teacher = np.empty_like(teacher)
    gs2 = into_student.reshape(-1, c_n)
    gt2 = into_teacher.reshape(-1, c_n)
    for r in range(n):
        lse_s = _row_logsumexp(s2, r, inv_t)
        lse_t = _row_logsumexp(t2, r, inv_t)
        pv = 0.0
        for j in range(c_n):
            log_p = t2[r, j] * inv_t - lse_t
            log_q = s2[r, j] * inv_t - lse_s
            pv += math.exp(log_p) * (log_p - log_q)
        for j in range(c_n):
            log_p = t2[r, j] * inv_t - lse_t
            log_q = s2[r, j] * inv_t - lse_s
            p = math.exp(log_p)
            gs2[r, j] = k * (math.exp(log_q) - p)
            gt2[r, j] = k * p * ((log_p - log_q) - pv)
    return into_student, into_teacher
