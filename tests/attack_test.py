import dataclasses
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import pytest
import chex
import jax
import jax.numpy as jnp
import numpy as np

import conftest
import kkt_test
from jaxrecon import attack
from jaxrecon import kkt
from jaxrecon import nets


def small_net(seed=0, d=5, widths=(7,), n_out=1):
  cfg = nets.MLPConfig(d_in=d, widths=widths, n_out=n_out, init_scales=None)
  return nets.init(jax.random.key(seed), cfg, jnp.float64)


def fixed_hyper(c, lr_x=0.01, init_scale=0.1, lambda_min=0.3, alpha=20.0, radius=1.0, lr_lambda=1e-4,
                shift=0.0):
  return attack.Hyper(np.full(c, init_scale), np.full(c, lr_x), np.full(c, lambda_min), np.full(c, alpha),
                      np.arange(c), np.full(c, radius), np.full(c, lr_lambda), np.full(c, shift))


CFG = attack.AttackConfig(m=6, steps=12, log_every=4, dtype="float64")


class SurrogateTest(parameterized.TestCase):

  def test_forward_exact_derivative_sigmoid_and_differentiated(self):
    z = jnp.array([-2.0, -1e-3, 0.0, 1e-3, 0.7, 3.0])
    alpha = 7.0
    np.testing.assert_array_equal(attack.surrogate_relu(z, alpha), jax.nn.relu(z))
    first = jax.grad(lambda t: jnp.sum(attack.surrogate_relu(t, alpha)))
    s = jax.nn.sigmoid(alpha * z)
    np.testing.assert_allclose(first(z), s, rtol=1e-14)
    second = jax.grad(lambda t: jnp.sum(first(t)))(z)
    np.testing.assert_allclose(second, alpha * s * (1 - s), rtol=1e-12)

  def test_outer_gradient_sees_the_surrogate_second_derivative(self):
    # d/dx of the weighted gradient: with a true ReLU relu'' = 0, so only the explicit x factors count; the
    # surrogate adds alpha s (1 - s) terms, which vanish as alpha grows (away from the kink).
    params = small_net()
    x = jax.random.normal(jax.random.key(1), (4, 5), jnp.float64)
    lam, y = jnp.ones(4), jnp.array([1.0, -1.0, 1.0, -1.0])

    def w1_term(x, alpha):
      return jnp.sum(jnp.sin(attack.surrogate_weighted_gradient(params, x, lam, y, alpha)[0]["w"]))

    def w1_term_relu(x):
      g = jax.grad(lambda p: jnp.sum(lam * y * nets.apply(p, x)) / 4)(params)
      return jnp.sum(jnp.sin(g[0]["w"]))
    @jax.custom_jvp
    def frozen(z):  # the same derivative sigmoid(5 z), but NOT differentiated again
      return jax.nn.relu(z)
    frozen.defjvp(lambda p, t: (jax.nn.relu(p[0]),
                                jax.lax.stop_gradient(jax.nn.sigmoid(5.0 * p[0])) * t[0]))

    def w1_term_frozen(x):
      g = jax.grad(lambda p: jnp.sum(lam * y * nets.apply(p, x, frozen)) / 4)(params)
      return jnp.sum(jnp.sin(g[0]["w"]))
    want = jax.grad(w1_term_relu)(x)
    small = jax.grad(w1_term)(x, 5.0)
    # same first derivative, so the weighted gradients agree; the x-gradients differ by the alpha s(1-s) terms
    np.testing.assert_allclose(attack.surrogate_weighted_gradient(params, x, lam, y, 5.0)[0]["w"],
                               jax.grad(lambda p: jnp.sum(lam * y * nets.apply(p, x, frozen)) / 4)(
                                   params)[0]["w"], rtol=1e-12)
    self.assertGreater(float(jnp.max(jnp.abs(small - jax.grad(w1_term_frozen)(x)))), 1e-3)
    large = jax.grad(w1_term)(x, 1e9)
    self.assertGreater(float(jnp.max(jnp.abs(small - want))), 1e-3)
    np.testing.assert_allclose(large, want, atol=1e-8)



def _reference_jacobian(params, x, alpha):
  """d(grad_theta Phi)/dx for ONE input by hand, with the reference's modified-ReLU semantics.

  Every derivative of an activation's output is s = sigmoid(alpha z), and of s itself alpha s (1 - s);
  values are the true relu. Written out layer by layer for 2- or 3-layer nets (first-layer bias optional).
  Returns a tuple of per-layer dicts of arrays of shape param.shape + (d,).
  """
  p = [{k: np.asarray(v) for k, v in layer.items()} for layer in params]
  x = np.asarray(x)
  d = x.size
  sig = lambda t: 1.0 / (1.0 + np.exp(-alpha * t))
  z1 = x @ p[0]["w"] + p[0].get("b", 0.0)
  D1, h1 = sig(z1), np.maximum(z1, 0.0)
  Jz1 = p[0]["w"].T                                  # (w1, d)
  Jh1, JD1 = D1[:, None] * Jz1, (alpha * D1 * (1 - D1))[:, None] * Jz1
  if len(p) == 2:
    w2 = p[1]["w"][:, 0]
    d1 = w2 * D1                                     # dPhi/dz1
    Jd1 = w2[:, None] * JD1
    g_out = Jh1[:, None, :]                          # d h1 / dx, shape (w1, 1, d)
  else:
    W2, w3 = p[1]["w"], p[2]["w"][:, 0]
    z2 = h1 @ W2
    D2, h2 = sig(z2), np.maximum(z2, 0.0)
    Jz2 = W2.T @ Jh1
    Jh2, JD2 = D2[:, None] * Jz2, (alpha * D2 * (1 - D2))[:, None] * Jz2
    d2 = w3 * D2
    Jd2 = w3[:, None] * JD2
    d1 = D1 * (W2 @ d2)
    Jd1 = JD1 * (W2 @ d2)[:, None] + D1[:, None] * (W2 @ Jd2)
    J_W2 = Jh1[:, None, :] * d2[None, :, None] + h1[:, None, None] * Jd2[None, :, :]
    g_out = Jh2[:, None, :]
  J_W1 = np.eye(d)[:, None, :] * d1[None, :, None] + x[:, None, None] * Jd1[None, :, :]
  out = [{"w": J_W1}]
  if "b" in p[0]:
    out[0]["b"] = Jd1
  if len(p) == 3:
    out.append({"w": J_W2})
  out.append({"w": g_out})
  return tuple(out)


class ReferenceSecondDerivativeTest(parameterized.TestCase):
  """The outer x-gradient of grad_theta Phi follows the reference's modified ReLU in every pass."""

  def test_toy_from_the_issue(self):
    # Phi = w2 relu(w1 x), alpha = 2, w = 1: d/dx (dPhi/dw2) = sigmoid(2 x) = 0.6457 / 0.3543 at x = +-0.3
    def dphi_dw2(x):
      return jax.grad(lambda w: w[1] * attack.surrogate_relu(w[0] * x, 2.0))(jnp.array([1.0, 1.0]))[1]
    self.assertAlmostEqual(float(jax.grad(dphi_dw2)(0.3)), 0.6456563062257954, places=12)
    self.assertAlmostEqual(float(jax.grad(dphi_dw2)(-0.3)), 0.3543436937742046, places=12)

  def _jac(self, params, x, alpha):
    one = jnp.ones(1, jnp.float64)
    return jax.jacrev(lambda v: attack.surrogate_weighted_gradient(params, v[None], one, one, alpha))(x)

  @parameterized.parameters(((7,), False), ((7,), True), ((6, 5), False), ((6, 5), True))
  def test_against_hand_formula(self, widths, bias):
    cfg = nets.MLPConfig(d_in=4, widths=widths, init_scales=None, first_bias=bias)
    params = nets.init(jax.random.key(3), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(4), (4,), jnp.float64)
    got = self._jac(params, x, 3.0)
    want = _reference_jacobian(params, x, 3.0)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(np.asarray(g).reshape(w.shape), w, rtol=1e-12, atol=1e-14)

  @parameterized.parameters(((7,),), ((6, 5),))
  def test_against_finite_differences_of_the_first_derivative(self, widths):
    # The reference's second derivative is the exact derivative of a net whose activations are anchored
    # softplus curves relu(z0) + sp(z) - sp(z0), sp(z) = log(1 + e^{alpha z}) / alpha, z0 the pre-activations
    # at x0: same value and first derivative sigmoid(alpha z) at x0, and second derivative alpha s (1 - s).
    # Its first derivative (plain jax.grad, no custom rule) differenced centrally in x gives the Jacobian.
    alpha = 3.0
    cfg = nets.MLPConfig(d_in=4, widths=widths, init_scales=None, first_bias=True)
    params = nets.init(jax.random.key(5), cfg, jnp.float64)
    x0 = jax.random.normal(jax.random.key(6), (4,), jnp.float64)
    z0 = nets.preactivations(params, x0)[:-1]
    sp = lambda z: jnp.logaddexp(0.0, alpha * z) / alpha

    def anchored_grad(x):
      def phi(p):
        h = x
        for l, layer in enumerate(p):
          z = h @ layer["w"] + layer.get("b", 0.0)
          if l < len(p) - 1:
            a = z0[l]
            h = jax.nn.relu(a) + sp(z) - sp(a)
        return z[0]
      return jax.grad(phi)(params)
    eps = 1e-6
    cols = []
    for k in range(4):
      e = jnp.zeros(4).at[k].set(eps)
      cols.append(jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), anchored_grad(x0 + e),
                                         anchored_grad(x0 - e)))
    fd = jax.tree_util.tree_map(lambda *c: jnp.stack(c, axis=-1), *cols)
    got = self._jac(params, x0, alpha)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(fd)):
      np.testing.assert_allclose(np.asarray(g).reshape(w.shape), w, rtol=1e-6, atol=1e-8)

class LossTest(parameterized.TestCase):

  @parameterized.parameters(1, 3)
  def test_weighted_gradient_matches_kkt_with_large_alpha(self, n_out):
    params = small_net(2, n_out=n_out)
    x = jax.random.normal(jax.random.key(3), (6, 5), jnp.float64)
    y = (attack.candidate_labels(6, n_out) if n_out > 1 else attack.candidate_labels(6).astype(jnp.float64))
    lam = jax.random.uniform(jax.random.key(4), (6,), jnp.float64)
    got = attack.surrogate_weighted_gradient(params, x, lam, y, 1e8)
    want = kkt.weighted_gradient(params, x, y, lam / 6.0)  # the (1/m) scaling
    chex.assert_trees_all_close(got, want, rtol=1e-10, atol=1e-12)

  def test_stat_vanishes_at_exact_kkt_point(self):
    params, x, y, lam = kkt_test.exact_kkt_net()
    m = x.shape[0]
    cfg = attack.AttackConfig(m=m)
    # True candidates with lam_attack = m * lam; no pre-activation sits near the kink here, so a large alpha
    # makes the surrogate derivative the step function to float precision.
    loss, aux = attack.attack_loss((x, m * jnp.asarray(lam)), params, params, y.astype(jnp.float64), 1e6,
                                   0.0, cfg)
    self.assertLess(float(aux.stat), 1e-20)
    perturbed = x + 0.1
    _, aux2 = attack.attack_loss((perturbed, m * jnp.asarray(lam)), params, params, y.astype(jnp.float64),
                                 1e6, 0.0, cfg)
    self.assertGreater(float(aux2.stat), 1e-4)

  def test_lambda_and_prior_terms(self):
    params = small_net()
    x = jnp.array([[1.5, -0.2, 0.0, -3.0, 1.0]])
    lam = jnp.array([0.1])
    y = jnp.array([1.0])
    loss, aux = attack.attack_loss((x, lam), params, params, y, 10.0, 0.4, attack.AttackConfig(m=1))
    np.testing.assert_allclose(aux.lam_pen, 5 * 0.3 ** 2, rtol=1e-12)
    np.testing.assert_allclose(aux.prior, 0.5 ** 2 + 2.0 ** 2, rtol=1e-12)
    np.testing.assert_allclose(loss, aux.stat + aux.lam_pen + aux.prior, rtol=1e-12)
    _, aux = attack.attack_loss((x, -lam), params, params, y, 10.0, 0.4,
                                attack.AttackConfig(m=1, variant="signed", prior="none"))
    self.assertEqual(float(aux.lam_pen), 0.0)
    self.assertEqual(float(aux.prior), 0.0)

  def test_layer_weights(self):
    # each layer's part of ||theta - (1/m) sum lam grad q||^2 from kkt.weighted_gradient (an independent VJP of
    # the plain net at a large alpha), weighted by hand; a weight 0 drops its layer
    params = small_net(2, widths=(7, 6))
    x = jax.random.normal(jax.random.key(3), (6, 5), jnp.float64)
    y = attack.candidate_labels(6).astype(jnp.float64)
    lam = jax.random.uniform(jax.random.key(4), (6,), jnp.float64)
    g = kkt.weighted_gradient(params, x, y, lam / 6.0)
    part = [sum(float(jnp.sum(jnp.square(params[l][k] - g[l][k]))) for k in params[l]) for l in range(len(params))]
    self.assertLen(part, 3)
    cfg = lambda w: attack.AttackConfig(m=6, prior="none", layer_weights=w)
    for w in ((), (1.0, 1.0, 1.0), (1.0, 0.0, 1.0), (0.5, 2.0, 0.0)):
      _, aux = attack.attack_loss((x, lam), params, params, y, 1e8, 0.0, cfg(w))
      np.testing.assert_allclose(float(aux.stat), sum(c * p for c, p in zip(w or (1, 1, 1), part)), rtol=1e-9)
    with self.assertRaisesRegex(ValueError, "3-layer"):
      attack.attack_loss((x, lam), params, params, y, 1e8, 0.0, cfg((1.0, 0.0)))
    with self.assertRaisesRegex(ValueError, "layer_weights"):
      attack.AttackConfig(layer_weights=(1.0, -1.0))

  def test_match_init_target(self):
    p, p0 = small_net(0), small_net(1)
    t = attack.attack_target(p, p0)
    chex.assert_trees_all_close(t, jax.tree_util.tree_map(lambda a, b: a - b, p, p0))
    self.assertIs(attack.attack_target(p), p)

  def test_sign_target_by_hand(self):
    # l_inf stationarity's uniform subgradient: sign on |theta_j| >= tol * max|theta|, 0 elsewhere, at ||theta||
    p = ({"w": jnp.array([[4.0, -1.0], [-3.0, 0.5]]), "b": jnp.array([-2.5, 0.1])}, {"w": jnp.array([[1.9], [-4.0]])})
    t = attack.attack_target(p, target="sign", sign_tol=0.5)
    norm = np.sqrt(16 + 1 + 9 + 0.25 + 6.25 + 0.01 + 1.9 ** 2 + 16)
    c = norm / 2.0  # four entries reach 2.0 = 0.5 * 4 (4, -3, -2.5, -4)
    np.testing.assert_allclose(t[0]["w"], c * np.array([[1, 0], [-1, 0]]), rtol=1e-6)
    np.testing.assert_allclose(t[0]["b"], c * np.array([-1, 0]), rtol=1e-6)
    np.testing.assert_allclose(t[1]["w"], c * np.array([[0], [-1]]), rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "target"):
      attack.AttackConfig(target="l1")

  def test_cone_gap_by_hand(self):
    from jaxrecon.attack import loss as attack_loss_mod  # noqa: PLC0415
    t = ({"w": jnp.array([[2.0, 0.0], [-2.0, 0.0]])},)            # saturated: (0,0) +, (1,0) -
    inside = ({"w": jnp.array([[3.0, 0.0], [-1.0, 0.0]])},)       # any positive weights, mass 4 = sum |t|
    self.assertAlmostEqual(float(attack_loss_mod.cone_gap(t, inside)), 0.0)
    g = ({"w": jnp.array([[3.0, 0.5], [0.5, -1.0]])},)
    # unsaturated 0.5^2 + 1^2; wrong sign at (1,0): 0.5^2; mass (3 - 0.5) - 4 = -1.5 over |S| = 2
    self.assertAlmostEqual(float(attack_loss_mod.cone_gap(t, g)), 0.25 + 1.0 + 0.25 + 2.25 / 2, places=6)

  def test_labels_balanced(self):
    np.testing.assert_array_equal(attack.candidate_labels(4), [-1, -1, 1, 1])
    np.testing.assert_array_equal(np.bincount(np.asarray(attack.candidate_labels(30, 10))), np.full(10, 3))


class StepTest(parameterized.TestCase):

  def test_sgd_momentum_matches_reference_update(self):
    params = small_net()
    h = attack.Hyper(*(jnp.asarray(v[0]) for v in fixed_hyper(1, lr_x=0.05)))
    y = attack.candidate_labels(6).astype(jnp.float64)
    state = attack.init_state(jax.random.key(0), 6, 5, h, CFG, jnp.float64)
    step = jax.jit(attack.make_step(CFG))
    grad = jax.grad(lambda xl: attack.attack_loss(xl, params, params, y, h.alpha, h.lambda_min, CFG)[0])
    g0 = grad((state.x, state.lam))
    s1, _ = step(state, h, params, params, y)
    np.testing.assert_allclose(s1.x, state.x - 0.05 * g0[0], rtol=1e-12)
    np.testing.assert_allclose(s1.lam, state.lam - CFG.lr_lambda * g0[1], rtol=1e-12)
    g1 = grad((s1.x, s1.lam))
    s2, _ = step(s1, h, params, params, y)
    np.testing.assert_allclose(s2.x, s1.x - 0.05 * (0.9 * g0[0] + g1[0]), rtol=1e-12)

  def test_divergence_freezes_state(self):
    params = small_net()
    res = attack.run_sweep(jax.random.key(0), params, fixed_hyper(2, lr_x=1e30, init_scale=1.0), 5,
                           CFG, log=None)
    self.assertTrue(res.diverged.all())
    self.assertTrue(np.isnan(res.loss).all())
    self.assertTrue(np.isfinite(res.x).all())

  def test_sphere_init(self):
    cfg = attack.AttackConfig(m=8, prior="sphere", dtype="float64")
    h = attack.Hyper(*(jnp.asarray(v[0]) for v in fixed_hyper(1, radius=4.0)))
    s = attack.init_state(jax.random.key(0), 8, 5, h, cfg, jnp.float64)
    np.testing.assert_allclose(jnp.linalg.norm(s.x, axis=1), 4.0, rtol=1e-12)

  def test_authors_sphere_init(self):
    # RevisitKKTAttackPrior's extraction.py: uniform on the sphere of radius init_scale about the origin, the
    # shift added to ONE random coordinate (the same for every candidate of a configuration)
    cfg = attack.AttackConfig(m=8, init="sphere_one_coordinate", dtype="float64")
    h = attack.Hyper(*(jnp.asarray(v[0]) for v in fixed_hyper(1, init_scale=0.3, shift=10.0)))
    x = np.asarray(attack.init_state(jax.random.key(0), 8, 50, h, cfg, jnp.float64).x)
    moved = np.flatnonzero(np.abs(x).max(axis=0) > 5.0)
    self.assertLen(moved, 1)
    base = x.copy()
    base[:, moved[0]] -= 10.0
    np.testing.assert_allclose(np.linalg.norm(base, axis=1), 0.3, rtol=1e-12)
    h0 = attack.Hyper(*(jnp.asarray(v[0]) for v in fixed_hyper(1, init_scale=0.3)))
    x0 = np.asarray(attack.init_state(jax.random.key(0), 8, 50, h0, cfg, jnp.float64).x)
    np.testing.assert_allclose(x0, base, rtol=1e-12)  # the shift is the only difference
    with self.assertRaisesRegex(ValueError, "candidate init"):
      attack.AttackConfig(init="uniform")

  def test_shift_moves_start_and_box_and_lambda_lr_is_per_configuration(self):
    # Hand-derived: the box penalty about shift s is sum relu(|x - s| - box)^2; the multipliers step by the
    # configuration's own lambda lr; prior_weight scales the penalty and 0 removes it.
    params = small_net()
    y = attack.candidate_labels(6).astype(jnp.float64)
    h0 = attack.Hyper(*(jnp.asarray(v[0]) for v in fixed_hyper(1, init_scale=2.0)))
    h = attack.Hyper(*(jnp.asarray(v[0]) for v in fixed_hyper(1, init_scale=2.0, shift=10.0, lr_lambda=0.1)))
    s0 = attack.init_state(jax.random.key(3), 6, 5, h0, CFG, jnp.float64)
    s = attack.init_state(jax.random.key(3), 6, 5, h, CFG, jnp.float64)
    np.testing.assert_allclose(s.x, s0.x + 10.0, rtol=1e-12)
    want = np.sum(np.maximum(np.abs(np.asarray(s.x) - 10.0) - CFG.box, 0.0) ** 2)
    for w in (1.0, 0.25, 0.0):
      cfg = dataclasses.replace(CFG, prior_weight=w)
      _, aux = attack.attack_loss((s.x, s.lam), params, params, y, 20.0, 0.3, cfg, 10.0)
      self.assertAlmostEqual(float(aux.prior), w * want, delta=1e-9 * want)
    grad = jax.grad(lambda xl: attack.attack_loss(xl, params, params, y, h.alpha, h.lambda_min, CFG, 10.0)[0])
    s1, _ = jax.jit(attack.make_step(CFG))(s, h, params, params, y)
    np.testing.assert_allclose(s1.lam, s.lam - 0.1 * grad((s.x, s.lam))[1], rtol=1e-12)


class SweepTest(parameterized.TestCase):

  @parameterized.parameters("sgd", "adam")
  def test_vmapped_sweep_equals_loop(self, optimizer):
    params = small_net()
    cfg = attack.AttackConfig(m=6, steps=12, log_every=5, dtype="float64", optimizer=optimizer)
    hyper = attack.random_sweep(jax.random.key(5), 3, {"lr_x": (1e-3, 1e-1), "init_scale": (0.01, 1.0)},
                                seeds=2)
    together = attack.run_sweep(jax.random.key(1), params, hyper, 5, cfg, log=None)
    for c in range(3):
      alone = attack.run_sweep(jax.random.key(1), params, hyper.take([c]), 5, cfg, log=None)
      np.testing.assert_allclose(together.x[c], alone.x[0], rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(together.loss[c], alone.loss[0], rtol=1e-9)
    chunked = attack.run_sweep(jax.random.key(1), params, hyper, 5,
                               attack.AttackConfig(**{**cfg.__dict__, "chunk": 2}), log=None)
    np.testing.assert_allclose(chunked.x, together.x, rtol=1e-9, atol=1e-12)
    self.assertLen(together.history, 3)  # steps 5, 10, 12
    self.assertEqual(together.history[-1]["step"], 12)

  def test_one_trace_for_all_chunks_and_segments(self):
    params = small_net()
    attack.make_sweep_runner.cache_clear()  # a runner cached by an earlier test would not trace at all
    calls = []
    orig = attack.loss.attack_loss

    def counting(*a, **k):
      calls.append(1)
      return orig(*a, **k)
    attack.loss.attack_loss = counting
    try:
      cfg = attack.AttackConfig(m=4, steps=8, log_every=4, dtype="float64", chunk=2)
      attack.run_sweep(jax.random.key(0), params, fixed_hyper(4), 5, cfg, log=None)
    finally:
      attack.loss.attack_loss = orig
    self.assertLen(calls, 1)

  def test_float32_default_path_with_x64_off(self):
    # the attack's default dtype is float32: run it as a user without x64 would. The loss and its gradient at
    # the same point agree with float64 to float32 precision; the sweep runs, stays float32 and lowers the loss.
    cfg32 = attack.AttackConfig(m=6, steps=20, log_every=10)
    self.assertEqual(cfg32.dtype, "float32")
    params = small_net()
    x = np.asarray(jax.random.normal(jax.random.key(3), (6, 5)), np.float64)
    lam = np.linspace(0.5, 1.5, 6)
    target = attack.attack_target(params)
    y_hat = attack.candidate_labels(6)

    def loss_and_grad(p, x, lam, target, dtype):
      fn = jax.value_and_grad(lambda xl: attack.attack_loss(xl, p, target, y_hat.astype(dtype), 20.0, 0.4,
                                                            cfg32)[0])
      return fn((jnp.asarray(x, dtype), jnp.asarray(lam, dtype)))
    ref, (gx_ref, _) = loss_and_grad(params, x, lam, target, jnp.float64)
    cast = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), t)  # noqa: E731
    hyper = attack.random_sweep(jax.random.key(5), 2, {"lr_x": (1e-3, 1e-2), "init_scale": (0.1, 0.5)})
    with jax.enable_x64(False):
      got, (gx, _) = loss_and_grad(cast(params), x, lam, cast(target), jnp.float32)
      hyper32 = attack.random_sweep(jax.random.key(5), 2, {"lr_x": (1e-3, 1e-2), "init_scale": (0.1, 0.5)})
      res = attack.run_sweep(jax.random.key(1), cast(params), hyper32, 5, cfg32, log=None)
      with self.assertRaisesRegex(ValueError, "float64 needs jax_enable_x64"):
        attack.run_sweep(jax.random.key(1), cast(params), hyper32, 5,
                         attack.AttackConfig(m=6, steps=2, dtype="float64"), log=None)
    self.assertEqual(gx.dtype, jnp.float32)
    np.testing.assert_allclose(float(got), float(ref), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gx), np.asarray(gx_ref), rtol=1e-4, atol=1e-5 * np.abs(gx_ref).max())
    np.testing.assert_array_equal(hyper32.lr_x, hyper.lr_x)  # the sweep does not depend on the x64 mode
    self.assertEqual(res.x.dtype, np.float32)
    first = np.asarray(res.history[0]["loss"])
    self.assertTrue(np.all(np.isfinite(res.loss)) and np.all(res.loss <= first))

  def test_random_sweep_ranges(self):
    h = attack.random_sweep(jax.random.key(0), 200, {"alpha": (20.0, 20.0)})
    self.assertTrue(np.all(h.alpha == 20.0))
    self.assertTrue(np.all((h.lr_x >= 1e-5) & (h.lr_x <= 1.0)))
    self.assertTrue(np.all((h.lambda_min >= 0.01) & (h.lambda_min <= 0.5)))
    # log-uniform: about half the draws below the geometric mean of the range
    self.assertBetween(np.mean(h.init_scale < np.sqrt(1e-6 * 0.1)), 0.35, 0.65)
    with self.assertRaisesRegex(ValueError, "bad range for lr_x"):
      attack.random_sweep(jax.random.key(0), 2, {"lr_x": (0.0, 1.0)})

  def test_grid_sweep(self):
    h = attack.grid_sweep([1e-3], [0.1, 0.2], [0.4], [10.0, 20.0, 30.0], seeds=(0, 1))
    self.assertEqual(h.size, 12)
    self.assertEqual(len({(a, b, s) for a, b, s in zip(h.lr_x, h.alpha, h.seed)}), 12)

  def test_authors_grid_has_108_settings(self):
    # x lr 3 x lambda lr 2 x init scale 3 x init shift 3 x lambda_min 2 (alpha fixed) = 108
    sc = attack.SweepConfig(kind="grid", lr_x=(1.0, 0.5, 0.1), lr_lambda=(0.1, 0.01), init_scale=(0.1, 1.0, 10.0),
                            shift=(0.0, 1.0, 10.0), lambda_min=(0.0, 0.5), alpha=(20.0,))
    h = sc.hyper(jax.random.key(0))
    self.assertEqual(h.size, 108)
    settings = set(zip(h.lr_x, h.lr_lambda, h.init_scale, h.shift, h.lambda_min))
    self.assertLen(settings, 108)
    self.assertEqual(h.shift[0], 0.0)
    self.assertEqual(h.shift[-1], 10.0)  # shift varies slower than the older fields: old grids keep their order
    with self.assertRaisesRegex(ValueError, "lr_lambda: one value"):
      attack.SweepConfig(lr_lambda=(0.1, 0.01)).hyper(jax.random.key(0))
    r = attack.SweepConfig(configs=2).hyper(jax.random.key(0), lr_lambda=3e-3)
    np.testing.assert_array_equal(r.lr_lambda, [3e-3, 3e-3])  # the attack's lambda lr when the sweep names none

  def test_bad_config(self):
    with self.assertRaisesRegex(ValueError, "unknown prior"):
      attack.AttackConfig(prior="gaussian")
    with self.assertRaisesRegex(ValueError, "match_init needs"):
      attack.run_sweep(jax.random.key(0), small_net(), fixed_hyper(1), 5,
                       attack.AttackConfig(m=4, match_init=True), log=None)


_SHARDED = r"""
import os, sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxrecon import attack, nets
assert jax.device_count() == 4, jax.devices()
params = nets.init(jax.random.key(0), nets.MLPConfig(d_in=5, widths=(7,), init_scales=None), jnp.float64)
hyper = attack.random_sweep(jax.random.key(5), 6, {"lr_x": (1e-3, 1e-1), "init_scale": (0.01, 1.0)})
cfg = attack.AttackConfig(m=6, steps=10, log_every=5, dtype="float64")
mesh = attack.config_mesh()
a = attack.run_sweep(jax.random.key(1), params, hyper, 5, cfg, mesh=mesh, log=None)
b = attack.run_sweep(jax.random.key(1), params, hyper, 5, cfg, mesh=None, log=None)
np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-12)
assert a.x.shape == (6, 6, 5)
print("OK")
"""


class ShardingTest(absltest.TestCase):

  @pytest.mark.slow
  def test_sharded_sweep_on_fake_devices_equals_unsharded(self):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=conftest.ROOT)
    proc = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True, env=env,
                          timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("OK", proc.stdout)


class HalvingTest(absltest.TestCase):

  def test_survivors_equal_the_plain_sweep_and_the_pruned_stop_where_they_were(self):
    params = small_net()
    cfg = attack.AttackConfig(m=6, steps=12, log_every=4, dtype="float64")
    hyper = attack.random_sweep(jax.random.key(5), 5, {"lr_x": (1e-3, 3e-1), "init_scale": (0.01, 1.0)})
    plain = attack.run_sweep(jax.random.key(1), params, hyper, 5, cfg, log=None)
    early = attack.run_sweep(jax.random.key(1), params, hyper, 5, dataclasses.replace(cfg, steps=4), log=None)
    seen = []
    halved = attack.run_halving(jax.random.key(1), params, hyper, 5, cfg, prune_at=(4, 8), keep=0.5, log=None,
                                on_segment=lambda step, snap, row: seen.append((step, snap()[1])))
    # ranked by the loss at step 4 (an independent argsort of the plain sweep's step-4 losses), best 3 go on
    first = set(np.argsort(early.loss)[:3])
    pruned = sorted(set(range(5)) - first)
    np.testing.assert_allclose(halved.x[pruned], early.x[pruned], rtol=1e-12)
    np.testing.assert_allclose(halved.loss[pruned], early.loss[pruned], rtol=1e-12)
    # of those 3, the best 2 at step 8 reach step 12 identical to the plain sweep's configurations
    loss8 = {c: l for c, l in zip(range(5), seen[1][1])}
    final = sorted(sorted(first, key=loss8.get)[:2])
    np.testing.assert_allclose(halved.x[final], plain.x[final], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(halved.loss[final], plain.loss[final], rtol=1e-9)
    self.assertEqual([s for s, _ in seen], [4, 8, 12])
    self.assertEqual([len(r["configs"]) for r in halved.history], [5, 3, 2])

  def test_bad_keep(self):
    with self.assertRaisesRegex(ValueError, "keep"):
      attack.run_halving(jax.random.key(0), small_net(), fixed_hyper(2), 5, CFG, keep=0.0, log=None)


class SweepConfigTest(absltest.TestCase):

  def test_radii_multiply_the_configurations(self):
    sc = attack.SweepConfig(kind="grid", init_scale=(0.1,), lr_x=(0.01, 0.02), lambda_min=(0.3,), alpha=(20.0,),
                            radii=(1.0, 4.0))
    h = sc.hyper(jax.random.key(0), radius_unit=2.0)
    np.testing.assert_array_equal(h.radius, [2.0, 2.0, 8.0, 8.0])  # radius slowest, in the given unit
    np.testing.assert_array_equal(h.lr_x, [0.01, 0.02, 0.01, 0.02])
    r = attack.SweepConfig(configs=3, radii=(1.0, 2.0)).hyper(jax.random.key(1))
    np.testing.assert_array_equal(r.lr_x[:3], r.lr_x[3:])  # the same draws at every radius

  def test_bad_sweeps_are_named(self):
    for kw, msg in (({"lr_x": (1.0, 0.1)}, "bad range for lr_x"), ({"radii": (0.0,)}, "radii must be positive"),
                    ({"alpha": (1.0, 2.0, 3.0)}, "alpha: give lo,hi"), ({"kind": "halton"}, "sweep kind")):
      with self.assertRaisesRegex(ValueError, msg):
        attack.SweepConfig(**kw).hyper(jax.random.key(0))



class SweepValidationTest(absltest.TestCase):

  def test_non_finite_values_are_refused_naming_the_field(self):
    for field, value in (("lr_x", (float("nan"),)), ("lr_x", (1e-3, float("inf"))), ("init_scale", (float("nan"),)),
                         ("lr_lambda", (float("inf"),)), ("shift", (float("nan"),))):
      with self.assertRaisesRegex(ValueError, f"{field}: every value must be a finite number"):
        attack.SweepConfig(**{field: value}).validate()
    attack.SweepConfig().validate()  # the defaults pass


if __name__ == "__main__":
  absltest.main()
