from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from jaxrecon import kkt
from jaxrecon import nets


report = kkt.report


def random_net(seed, widths=(7, 5), d=4, n=9, n_out=1, first_bias=False):
  cfg = nets.MLPConfig(d_in=d, widths=widths, n_out=n_out, init_scales=None, first_bias=first_bias)
  params = nets.init(jax.random.key(seed), cfg, jnp.float64)
  x = jax.random.normal(jax.random.key(seed + 100), (n, d), jnp.float64)
  if n_out == 1:
    y = jnp.where(jax.random.normal(jax.random.key(seed + 200), (n,)) > 0, 1, -1)
  else:
    y = jax.random.randint(jax.random.key(seed + 200), (n,), 0, n_out)
  return params, x, y


def flat_jacobian(params, x, y):
  J = jax.jacobian(lambda p: kkt.margins_of(p, x, y))(params)
  return jnp.concatenate([l.reshape(x.shape[0], -1) for l in jax.tree_util.tree_leaves(J)], axis=1)


def flat(tree):
  return jnp.concatenate([l.ravel() for l in jax.tree_util.tree_leaves(tree)])


def exact_kkt_net(k=3, d=6, seed=0):
  """A 2-layer net at an exact KKT point of (P), built by hand and rotated at random.

  k copies of (w = u/sqrt(k), v = 1/sqrt(k)) and of (-u/sqrt(k), -1/sqrt(k)): Phi(x) = u . x.
  Support points u +- e2 (label +1), -u +- e3 (label -1), each lambda = 1/2; off-margin points 3u +- e4
  and -2u (lambda = 0). Stationarity: w = v sum_i lam_i y_i x_i over each neuron's active points.
  """
  e = np.eye(d)
  u = e[0]
  xs = [u + e[1], u - e[1], -u + e[2], -u - e[2], 3 * u + e[3], 3 * u - e[3], -2 * u]
  ys = [1, 1, -1, -1, 1, 1, -1]
  W = np.concatenate([np.tile(u[:, None], (1, k)), np.tile(-u[:, None], (1, k))], axis=1) / np.sqrt(k)
  v = np.concatenate([np.ones(k), -np.ones(k)]) / np.sqrt(k)
  Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  params = ({"w": jnp.asarray(Q @ W)}, {"w": jnp.asarray(v[:, None])})
  x = jnp.asarray(np.asarray(xs) @ Q.T)
  lam = np.array([0.5, 0.5, 0.5, 0.5, 0, 0, 0])
  return params, x, jnp.asarray(ys), lam


def kink_kkt_net():
  """Exact KKT only in the Clarke sense: point P sits at neuron 1's kink and must carry mu = 1/2.

  Neurons (w=(1,0), v=1), (w=(0,1), v=1); points A=(1,-1/2), P=(0,1), both label +1, lambda = 1.
  Neuron 1: w_1 = lam_A A + mu P needs mu = 1/2 in [0, lam_P]; with relu'(0) = 0 it is off by (0, 1/2).
  """
  params = ({"w": jnp.asarray([[1.0, 0.0], [0.0, 1.0]])}, {"w": jnp.asarray([[1.0], [1.0]])})
  x = jnp.asarray([[1.0, -0.5], [0.0, 1.0]])
  return params, x, jnp.asarray([1, 1])


class KKTTest(chex.TestCase, parameterized.TestCase):

  @parameterized.product(widths=[(6,), (5, 4), (4, 3, 3)], n_out=[1, 3], first_bias=[False, True])
  def test_gram_and_vjp_match_explicit_jacobian(self, widths, n_out, first_bias):
    params, x, y = random_net(1, widths, n_out=n_out, first_bias=first_bias)
    J = flat_jacobian(params, x, y)
    np.testing.assert_allclose(kkt.gram(params, x, y), J @ J.T, rtol=1e-10, atol=1e-12)
    lam = jnp.abs(jax.random.normal(jax.random.key(7), (x.shape[0],), jnp.float64))
    r = kkt.stationarity_residual(params, x, y, lam)
    np.testing.assert_allclose(flat(r), flat(params) - J.T @ lam, rtol=1e-10, atol=1e-12)
    # Euler: J theta = L q
    np.testing.assert_allclose(J @ flat(params), len(params) * kkt.margins_of(params, x, y),
                               rtol=1e-10, atol=1e-12)

  @parameterized.parameters(1, 2, 3)
  def test_best_multipliers_match_scipy(self, seed):
    params, x, y = random_net(seed, (8, 6), n=12)
    J = flat_jacobian(params, x, y)
    ref, rnorm = optimize.nnls(np.asarray(J.T), np.asarray(flat(params)))
    res = kkt.best_multipliers(params, x, y)
    np.testing.assert_allclose(res.x, ref, atol=1e-8)

  @parameterized.parameters(1, 3)
  def test_exact_kkt_point(self, k):
    params, x, y, lam = exact_kkt_net(k)
    q = kkt.margins_of(params, x, y)
    np.testing.assert_allclose(q, [1, 1, 1, 1, 3, 3, 2], atol=1e-12)
    rep = report(params, x, y, relaxed=False)
    self.assertLessEqual(float(rep.eps_rel), 1e-6)
    self.assertLessEqual(float(rep.delta), 1e-10)
    np.testing.assert_allclose(rep.lam, lam, atol=1e-8)
    np.testing.assert_array_equal(rep.support, lam > 0)
    # a perturbed network is not KKT
    bad = jax.tree_util.tree_map(lambda p: p + 0.05 * jnp.ones_like(p), params)
    self.assertGreater(float(report(bad, x, y, relaxed=False).eps_rel), 1e-2)

  @chex.variants(with_jit=True, without_jit=True)
  def test_stationarity_at_the_exact_kkt_point_jit_and_eager(self):
    # the hand-built KKT point: theta = sum_i lam_i grad q_i exactly, compiled or op by op
    params, x, y, lam = exact_kkt_net(2)
    r = self.variant(kkt.stationarity_residual)(params, x, y, jnp.asarray(lam))
    self.assertLessEqual(float(optax.tree.norm(r)) / float(optax.tree.norm(params)), 1e-12)
    q = self.variant(kkt.margins_of)(params, x, y)
    np.testing.assert_allclose(q, [1, 1, 1, 1, 3, 3, 2], atol=1e-12)

  def test_residuals_invariant_to_rescaling(self):
    params, x, y = random_net(4, (8,), n=10)
    a = report(params, x, y, relaxed=False)
    b = report(nets.scale_params(params, 13.0), x, y, relaxed=False)
    # cert_eps_rel is not invariant: it uses the loss weights -l'(q), which change with the scale.
    for f in ("eps_rel", "delta", "normalized_margin", "eps_rel_relaxed"):
      np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-8, err_msg=f)
    np.testing.assert_allclose(a.lam, b.lam, rtol=1e-7, atol=1e-10)

  def test_clarke_aware_residual_at_a_kink(self):
    params, x, y = kink_kkt_net()
    rep = report(params, x, y, relaxed=True)
    self.assertEqual(int(rep.kink_pairs), 1)
    self.assertGreater(float(rep.eps_rel), 0.1)       # relu'(0) = 0 overstates the residual
    self.assertLessEqual(float(rep.eps_rel_relaxed), 1e-4)
    np.testing.assert_allclose(rep.lam_relaxed, [1.0, 1.0], atol=1e-3)
    # with no pair counted as a kink the Clarke fit can do nothing
    none = report(params, x, y, kink_tol=-1.0, relaxed=True)
    self.assertEqual(int(none.kink_pairs), 0)
    np.testing.assert_allclose(none.eps_rel_relaxed, none.eps_rel, rtol=1e-9)

  def test_certificate_bounds_best_eps(self):
    params, x, y = random_net(5, (10,), n=15)
    for loss in ("logistic", "exponential"):
      rep = report(params, x, y, relaxed=False, loss=loss)
      self.assertGreaterEqual(float(rep.cert_eps_rel), float(rep.eps_rel) - 1e-12)

  def test_multiclass_report(self):
    params, x, y = random_net(6, (8,), n=10, n_out=3)
    rep = report(params, x, y, relaxed=True)
    chex.assert_tree_all_finite((rep.eps_rel, rep.delta, rep.lam))
    tparams, _ = kkt.normalize(params, x, y)
    Jt = flat_jacobian(tparams, x, y)
    ref, rnorm = optimize.nnls(np.asarray(Jt.T), np.asarray(flat(tparams)))
    np.testing.assert_allclose(rep.eps_rel, rnorm / np.linalg.norm(flat(tparams)), rtol=1e-7)

  def test_vmapped_sets_equal_loop_and_trace_once(self):
    params, _, _ = random_net(7, (6,), n=8)
    xs = jax.random.normal(jax.random.key(1), (5, 8, 4), jnp.float64)
    ys = jnp.where(jax.random.normal(jax.random.key(2), (5, 8)) > 0, 1, -1)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def many(xs, ys):
      return jax.vmap(lambda a, b: kkt.kkt_report(params, a, b, relaxed=True))(xs, ys)

    batched = many(xs, ys)
    many(xs + 0.0, ys)  # a second call must not retrace
    for i in range(5):
      one = report(params, xs[i], ys[i], relaxed=True)
      np.testing.assert_allclose(batched.eps_rel[i], one.eps_rel, rtol=1e-9)
      np.testing.assert_allclose(batched.eps_rel_relaxed[i], one.eps_rel_relaxed, rtol=1e-7)
      np.testing.assert_allclose(batched.lam[i], one.lam, atol=1e-9)

  def test_vmapped_checkpoints(self):
    params, x, y = random_net(8, (6,), n=8)
    stack = jax.tree_util.tree_map(lambda p: jnp.stack([p, 2 * p, p + 0.1]), params)
    reps = jax.jit(jax.vmap(lambda p: kkt.kkt_report(p, x, y, relaxed=False)))(stack)
    for i, p in enumerate([params, nets.scale_params(params, 2.0),
                           jax.tree_util.tree_map(lambda a: a + 0.1, params)]):
      np.testing.assert_allclose(reps.eps_rel[i], report(p, x, y, relaxed=False).eps_rel,
                                 rtol=1e-9)



class CertificateDepthTest(chex.TestCase):

  def test_certificate_survives_underflow(self):
    params, x, y = random_net(5, (10,), n=15)
    # fit, then scale far past where the loss weights -l'(q) underflow: the direction is unchanged
    q = kkt.margins_of(params, x, y)
    y = jnp.where(q > 0, y, -y)  # labels the net already fits
    big = nets.scale_params(params, 1e3 / jnp.sqrt(jnp.min(kkt.margins_of(params, x, y))))
    b = kkt.certificate(big, x, y)
    chex.assert_tree_all_finite(b)
    self.assertLess(float(b[0]), 1.0)
    self.assertGreaterEqual(float(b[0]), float(report(big, x, y, relaxed=False).eps_rel) - 1e-9)


def ray_nnls_residual(params, x, y, mask):
  """The relaxed QP solved independently: the cone {lam_i >= 0, 0 <= mu_ij <= lam_i} is generated by the rays
  (1, 1_S), S any subset of point i's freed pairs (the vertices of the cube), so the QP is an NNLS over ray
  coefficients of explicit Jacobian columns (scipy). Exponential in the freed pairs per point: small nets only."""
  import itertools
  J = np.asarray(flat_jacobian(params, x, y))  # relu'(0) = 0
  B = np.asarray(kkt.per_example_signals(params, x, y).back1)
  X, m = np.asarray(x), np.asarray(mask)
  act = np.asarray(nets.preactivations(params, x)[0] > 0)
  d, W1 = params[0]["w"].shape
  has_b = "b" in params[0]

  def pair(i, j):  # first-layer gradient of pair (i, j) with derivative 1, in flat() order ('b' before 'w')
    gw = np.zeros((d, W1))
    gw[:, j] = X[i] * B[i, j]
    parts = [gw.ravel()]
    if has_b:
      gb = np.zeros(W1)
      gb[j] = B[i, j]
      parts = [gb, gw.ravel()]
    return np.concatenate(parts + [np.zeros(J.shape[1] - sum(p.size for p in parts))])
  cols = []
  for i in range(X.shape[0]):
    free = np.flatnonzero(m[i])
    base = J[i] - sum((pair(i, j) for j in free if act[i, j]), np.zeros(J.shape[1]))
    for k in range(len(free) + 1):
      for S in itertools.combinations(free, k):
        cols.append(base + sum((pair(i, j) for j in S), np.zeros(J.shape[1])))
  return optimize.nnls(np.stack(cols, 1), np.asarray(flat(params)), maxiter=100000)[1]


class RelaxedResidualTest(parameterized.TestCase):

  @parameterized.parameters((1, 0.05, False, True), (2, 0.08, True, True), (3, 0.1, False, True),
                            (3, 0.1, False, False), (2, 0.08, True, False))
  def test_joint_qp_matches_independent_ray_nnls(self, seed, tol, bias, dense):
    # dense: the operators through (N, W1) products (small nets); else the (N + P) Gram matrix (large nets)
    if not dense:
      self.enter_context(mock.patch.object(kkt, "RELAX_SCATTER_BUDGET", 0.0))
    params, x, y = random_net(seed, (8,), d=4, n=10, first_bias=bias)
    tp, _ = kkt.normalize(params, x, y)
    mask, _ = kkt.kink_mask(tp, x, tol)
    self.assertGreater(int(mask.sum()), 5)
    pairs = kkt.freed_pairs(tp, x, tol)
    freed = np.zeros(mask.shape, bool)
    freed[np.asarray(pairs.point), np.asarray(pairs.neuron)] = np.asarray(pairs.valid)
    np.testing.assert_array_equal(freed, np.asarray(mask))  # every pair within tol, no other
    lam0 = kkt.best_multipliers(tp, x, y).x
    fit = jax.jit(kkt.relaxed_multipliers)(tp, x, y, lam0, pairs)
    want = ray_nnls_residual(tp, x, y, mask)
    np.testing.assert_allclose(float(fit.residual), want, rtol=1e-7)
    # the certificate: a lower bound within the tolerance, and the multipliers feasible
    self.assertLessEqual(float(fit.lower), want * (1 + 1e-9))
    self.assertGreaterEqual(float(fit.lower), want * (1 - 1e-5))
    self.assertTrue(np.all(np.asarray(fit.lam) >= 0))
    self.assertTrue(np.all(np.asarray(fit.mu) <= np.asarray(fit.lam)[np.asarray(pairs.point)] + 1e-15))
    self.assertTrue(np.all(np.asarray(fit.mu) >= 0))

  def test_tolerance_dependence_is_monotone_and_reported(self):
    params, x, y = random_net(4, (12,), d=5, n=14)
    eps = [float(report(params, x, y, kink_tol=t).eps_rel_relaxed) for t in (-1.0, 1e-2, 0.3)]
    exact = float(report(params, x, y, relaxed=False).eps_rel)
    self.assertAlmostEqual(eps[0], exact, places=9)  # nothing freed: the relaxed residual is eps_rel
    self.assertTrue(all(b <= a + 1e-9 for a, b in zip(eps, eps[1:])), eps)
    self.assertLess(eps[-1], exact)
    rep = report(params, x, y, kink_tol=0.3)
    self.assertLessEqual(float(rep.relaxed_gap), kkt.RELAX_TOL)
    self.assertGreater(float(rep.relax_radius), 0.0)
    self.assertLessEqual(float(rep.eps_rel_relaxed_lower), float(rep.eps_rel_relaxed))
    s = kkt.summarize(rep)  # a small net frees every pair within the tolerance: not capped
    self.assertEqual(s["freed_pairs"], s["kink_pairs"])
    self.assertFalse(s["relaxed_capped"])
    capped = kkt.summarize(rep._replace(freed_pairs=rep.kink_pairs - 1))  # as the 512-pair cap leaves it
    self.assertTrue(capped["relaxed_capped"])

  def test_projection_onto_the_cone(self):
    rng = np.random.default_rng(0)
    n, P = 5, 14
    a, v = rng.normal(size=n), rng.normal(size=P)
    pairs = kkt.FreedPairs(jnp.asarray(rng.integers(0, n, P)), jnp.arange(P), jnp.asarray(rng.uniform(size=P) < 0.8))
    lam, mu = kkt._project_pairs(jnp.asarray(a), jnp.asarray(v), pairs)
    pt, ok = np.asarray(pairs.point), np.asarray(pairs.valid)
    # against scipy, minimizing the distance over the cone point by point
    for i in range(n):
      free = np.flatnonzero((pt == i) & ok)
      cons = [{"type": "ineq", "fun": lambda u: u[0]}]
      cons += [{"type": "ineq", "fun": lambda u, k=k: u[1 + k]} for k in range(len(free))]
      cons += [{"type": "ineq", "fun": lambda u, k=k: u[0] - u[1 + k]} for k in range(len(free))]
      f = lambda u: (u[0] - a[i]) ** 2 + np.sum((u[1:] - v[free]) ** 2)
      res = optimize.minimize(f, np.zeros(1 + len(free)), constraints=cons, method="SLSQP",
                              options={"ftol": 1e-14, "maxiter": 500})
      self.assertAlmostEqual(float(lam[i]), res.x[0], places=6)
      np.testing.assert_allclose(np.asarray(mu)[free], res.x[1:], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mu)[~ok], 0.0)

if __name__ == "__main__":
  absltest.main()
