"""Spectral normalisation (models.normalization.SNConv2d / SNLinear) against
NumPy float64: the power iteration converges to the true largest singular
value, the normalised weight is what the forward pass uses, (u, v) persist
between steps and change only in training mode, gradients reach weight_orig
only, and the effective weight stays at spectral norm ~1 while training.

Reference semantics (PyTorch's torch.nn.utils.spectral_norm): with W_mat =
weight_orig reshaped [out, -1], a training-mode forward runs
v = n(W_mat^T u), u = n(W_mat v) (n = L2 normalisation) from the stored u and
stores the new (u, v); sigma = u . (W_mat v); the weight used is
weight_orig / sigma, with u, v treated as constants for the gradient.
"""

import jittor as jt
import numpy as np
from jittor import nn

from models.normalization import SNConv2d, SNLinear

IN, OUT, K = 3, 6, 3
X_SHAPE = (2, IN, 6, 5)
SINGULAR = np.array([5.0, 3.0, 2.0, 1.5, 1.0, 0.5])  # sigma far from 1, gap 3/5 for fast convergence


# ----------------------------------------------------------------------------
# NumPy float64 reference
# ----------------------------------------------------------------------------

def np_conv2d(x, w, b=None, pad=0):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + ho, j:j + wo], w[:, :, i, j])
    if b is not None:
        out += np.asarray(b, np.float64).reshape(1, -1, 1, 1)
    return out


def np_conv2d_weight_grad(x, g, kshape, pad):
    """d sum(conv(x, w) * g) / d w."""
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    _, _, kh, kw = kshape
    ho, wo = g.shape[2:]
    grad = np.zeros(kshape)
    for i in range(kh):
        for j in range(kw):
            grad[:, :, i, j] = np.einsum("nchw,nohw->oc", xp[:, :, i:i + ho, j:j + wo], g)
    return grad


def l2n(x):
    return x / (np.linalg.norm(x) + 1e-12)


def power_step(w_mat, u):
    v = l2n(w_mat.T @ u)
    return l2n(w_mat @ v), v


def top_sv(w):
    return np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]


def weight_with_spectrum(rng, shape, singular):
    """A random weight [out, ...] whose matrix [out, -1] has the given singular values."""
    out, fan = shape[0], int(np.prod(shape[1:]))
    u, _ = np.linalg.qr(rng.normal(size=(out, out)))
    v, _ = np.linalg.qr(rng.normal(size=(fan, out)))
    return (u @ np.diag(singular) @ v.T).reshape(shape)


def f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


def make_conv(seed=0):
    """An SNConv2d(3, 6, 3, padding 1) with a known spectrum and random unit (u, v); returns (layer, W, u0, v0, x)."""
    rng = np.random.RandomState(seed)
    layer = SNConv2d(IN, OUT, K, padding=1)
    w = f32(weight_with_spectrum(rng, (OUT, IN, K, K), SINGULAR))
    u0, v0 = f32(l2n(rng.normal(size=OUT))), f32(l2n(rng.normal(size=IN * K * K)))
    layer.weight_orig.assign(jt.array(w.astype(np.float32)))
    layer.weight_u.assign(jt.array(u0.astype(np.float32)))
    layer.weight_v.assign(jt.array(v0.astype(np.float32)))
    layer.bias.assign(jt.array(rng.normal(0, 0.1, OUT).astype(np.float32)))
    x = f32(rng.normal(size=X_SHAPE))
    return layer, w, u0, v0, x


def uv(layer):
    return layer.weight_u.numpy().astype(np.float64), layer.weight_v.numpy().astype(np.float64)


def sigma_of(w, u, v):
    return u @ (w.reshape(w.shape[0], -1) @ v)


def forward(layer, x):
    out = layer(jt.array(np.asarray(x, np.float32)))
    jt.sync_all()
    return out.numpy().astype(np.float64)


def test_weight_has_the_intended_spectrum():
    _, w, _, _, _ = make_conv()
    assert abs(top_sv(w) - 5.0) < 1e-5


# 1 ---------------------------------------------------------------------------

def test_power_iteration_converges_to_largest_singular_value():
    layer, w, u0, v0, x = make_conv()
    true_sigma = np.linalg.svd(w.reshape(OUT, -1))[1][0]
    layer.train()
    first = None
    for step in range(15):
        forward(layer, x)
        u, v = uv(layer)
        est = sigma_of(w, u, v)
        if step == 0:
            first = est
    assert abs(first - true_sigma) > 0.05, "the first estimate should still be visibly off (random start)"
    assert abs(est - true_sigma) / true_sigma < 1e-3, (est, true_sigma)
    assert abs(top_sv(w / est) - 1.0) < 1e-2
    # normalized_weight() (eval mode: no further iteration) gives the same unit-norm weight
    layer.eval()
    nw = layer.normalized_weight().numpy().astype(np.float64)
    assert abs(top_sv(nw) - 1.0) < 1e-2
    np.testing.assert_allclose(nw, w / est, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(uv(layer)[0], u)  # eval did not iterate


# 2 ---------------------------------------------------------------------------

def test_forward_uses_the_normalised_weight():
    layer, w, _, _, x = make_conv()
    layer.train()
    for _ in range(15):
        forward(layer, x)
    layer.eval()
    out = forward(layer, x)
    b = layer.bias.numpy().astype(np.float64)
    true_sigma = top_sv(w)
    normalised = np_conv2d(x, w / true_sigma, b, pad=1)
    raw = np_conv2d(x, w, b, pad=1)
    assert np.abs(out - normalised).max() < 1e-3 * np.abs(normalised).max()
    assert np.abs(out - raw).max() > 0.5 * np.abs(raw).max()


# 3 ---------------------------------------------------------------------------

def test_eval_keeps_u_v_and_train_updates_them():
    layer, w, u0, v0, x = make_conv()
    layer.eval()
    forward(layer, x)
    forward(layer, x)
    u, v = uv(layer)
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(v, v0)
    # eval output uses exactly the stored vectors
    out = forward(layer, x)
    ref = np_conv2d(x, w / sigma_of(w, u0, v0), layer.bias.numpy(), pad=1)
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    layer.train()
    forward(layer, x)
    u, v = uv(layer)
    assert np.abs(u - u0).max() > 1e-2 and np.abs(v - v0).max() > 1e-2


# 4 ---------------------------------------------------------------------------

def test_u_v_persist_between_steps():
    layer, w, u0, v0, x = make_conv()
    w_mat = w.reshape(OUT, -1)
    b = layer.bias.numpy().astype(np.float64)
    layer.train()
    out1 = forward(layer, x)
    u1, v1 = uv(layer)
    ref_u1, ref_v1 = power_step(w_mat, u0)
    np.testing.assert_allclose(u1, ref_u1, atol=1e-5)
    np.testing.assert_allclose(v1, ref_v1, atol=1e-5)
    assert np.abs(u1 - u0).max() > 1e-2
    np.testing.assert_allclose(out1, np_conv2d(x, w / sigma_of(w, ref_u1, ref_v1), b, pad=1), atol=1e-4)

    out2 = forward(layer, x)
    u2, v2 = uv(layer)
    ref_u2, ref_v2 = power_step(w_mat, u1)  # continues from the stored u1 ...
    np.testing.assert_allclose(u2, ref_u2, atol=1e-5)
    np.testing.assert_allclose(v2, ref_v2, atol=1e-5)
    assert np.abs(u2 - ref_u1).max() > 1e-3  # ... rather than starting again from u0
    sigma1, sigma2 = sigma_of(w, ref_u1, ref_v1), sigma_of(w, ref_u2, ref_v2)
    assert abs(sigma2 - sigma1) > 1e-2
    np.testing.assert_allclose(out2, np_conv2d(x, w / sigma2, b, pad=1), atol=1e-4)


# 5 ---------------------------------------------------------------------------

def test_gradient_reaches_weight_orig_only():
    layer, w, _, _, x = make_conv()
    rng = np.random.RandomState(5)
    g = f32(rng.normal(size=(2, OUT, 6, 5)))
    layer.train()
    loss = (layer(jt.array(x.astype(np.float32))) * jt.array(g.astype(np.float32))).sum()
    grad_w, grad_u, grad_v = jt.grad(loss, [layer.weight_orig, layer.weight_u, layer.weight_v])
    grad_w, grad_u, grad_v = grad_w.numpy(), grad_u.numpy(), grad_v.numpy()
    assert np.abs(grad_w).max() > 1e-2
    assert np.all(grad_u == 0) and np.all(grad_v == 0)
    assert layer.weight_u.is_stop_grad() and layer.weight_v.is_stop_grad()
    # the gradient itself: d/dW of sum(conv(x, W / sigma(W)) * g), u and v held constant
    u, v = uv(layer)  # the vectors this forward used
    sigma = sigma_of(w, u, v)
    gn = np_conv2d_weight_grad(x, g, w.shape, pad=1)  # gradient w.r.t. the normalised weight
    ref = gn / sigma - (gn * w).sum() / sigma ** 2 * np.outer(u, v).reshape(w.shape)
    np.testing.assert_allclose(grad_w, ref, atol=1e-4 * np.abs(ref).max())
    # the sigma term matters: ignoring it would not match
    assert np.abs(gn / sigma - ref).max() > 1e-2 * np.abs(ref).max()


# 6 ---------------------------------------------------------------------------

def test_sn_linear():
    rng = np.random.RandomState(6)
    layer = SNLinear(7, 5)
    w = f32(weight_with_spectrum(rng, (5, 7), np.array([4.0, 2.0, 1.0, 0.5, 0.25])))
    u0 = f32(l2n(rng.normal(size=5)))
    layer.weight_orig.assign(jt.array(w.astype(np.float32)))
    layer.weight_u.assign(jt.array(u0.astype(np.float32)))
    assert tuple(layer.weight_v.shape) == (7,)
    x = f32(rng.normal(size=(3, 7)))
    layer.train()
    forward(layer, x)
    np.testing.assert_allclose(uv(layer)[0], power_step(w, u0)[0], atol=1e-5)
    for _ in range(14):
        forward(layer, x)
    u, v = uv(layer)
    assert abs(sigma_of(w, u, v) - 4.0) < 4e-3
    layer.eval()
    out = forward(layer, x)
    b = layer.bias.numpy().astype(np.float64)
    np.testing.assert_allclose(out, x @ (w / 4.0).T + b, atol=2e-3)
    assert np.abs(out - (x @ w.T + b)).max() > 0.5
    np.testing.assert_array_equal(uv(layer)[0], u)


# 7 ---------------------------------------------------------------------------

def test_effective_weight_stays_normalised_while_training_with_adam():
    layer, w, _, _, x = make_conv()
    rng = np.random.RandomState(7)
    target = jt.array((3.0 * rng.normal(size=(2, OUT, 6, 5))).astype(np.float32))
    xj = jt.array(x.astype(np.float32))
    layer.train()
    for _ in range(15):  # let the power iteration settle first
        forward(layer, x)
    opt = nn.Adam(layer.parameters(), lr=0.02)
    w_start = layer.weight_orig.numpy().astype(np.float64)
    for _ in range(12):
        w_before = layer.weight_orig.numpy().astype(np.float64)
        u_before, _ = uv(layer)
        loss = ((layer(xj) - target) ** 2).mean()
        opt.step(loss)
        jt.sync_all()
        u, v = uv(layer)
        # u, v only ever change by the power step with the weight of that forward (not by Adam)
        ref_u, ref_v = power_step(w_before.reshape(OUT, -1), u_before)
        np.testing.assert_allclose(u, ref_u, atol=1e-5)
        np.testing.assert_allclose(v, ref_v, atol=1e-5)
        effective = w_before / sigma_of(w_before, u, v)
        assert abs(top_sv(effective) - 1.0) < 1e-2
    w_end = layer.weight_orig.numpy().astype(np.float64)
    # Adam did change the raw weight substantially, and its spectral norm moved away from 5
    assert np.abs(w_end - w_start).max() > 0.1
    assert abs(top_sv(w_end) - top_sv(w_start)) > 0.05
    # a final forward with the trained weight: still unit spectral norm
    forward(layer, x)
    u, v = uv(layer)
    assert abs(top_sv(w_end / sigma_of(w_end, u, v)) - 1.0) < 1e-2
