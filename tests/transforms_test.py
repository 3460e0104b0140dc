from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

import kkt_test
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon.noprior import transforms


def kkt_set():
  params, x, y, lam = kkt_test.exact_kkt_net()
  return params, x, y, jnp.asarray(lam)


class SplitTest(parameterized.TestCase):

  @parameterized.parameters(1e-2, 1.0, 1e2, 1e4)
  def test_exact_direction_keeps_everything_at_any_magnitude(self, a):
    params, x, y, lam = kkt_set()
    self.assertLess(float(kkt.report(params, x, y, relaxed=False).eps_rel), 1e-9)
    nu = transforms.orthogonal_direction(jax.random.key(0), x)
    np.testing.assert_allclose(x @ nu, 0.0, atol=1e-12)
    kept = transforms.check_split(params, x, y, lam, 0, nu, a, 0.5 * a)
    self.assertLess(float(kept.weighted_gradient_change), 1e-12)
    self.assertLess(float(kept.max_margin_change), 1e-12 * max(1.0, a))
    self.assertTrue(bool(kept.patterns_kept))
    self.assertGreater(float(transforms.max_safe_magnitude(params, x[0], nu)), 1e12)  # inf up to rounding
    # the split set is far from the true one and still an exact KKT set
    (z1, z2), _ = transforms.split(x[0], lam[0], nu, a, 0.5 * a)
    x_new = jnp.concatenate([x.at[0].set(z1), z2[None, :]])
    y_new = jnp.concatenate([y, y[:1]])
    self.assertLess(float(kkt.report(params, x_new, y_new, relaxed=False).eps_rel), 1e-6)  # NNLS, a 1e4-norm point
    self.assertGreater(float(jnp.linalg.norm(z1 - x[0])), 0.99 * a)

  def test_derived_weights_are_the_ones_that_work(self):
    params, x, y, lam = kkt_set()
    # a direction inside the data span that keeps point 0's pattern and margin (g_A . nu = 0)
    g = transforms.linear_gradient(params, x[0])
    nu = x[1] - x[0]
    nu = nu - (nu @ g) / (g @ g) * g
    a, b = 0.3, 0.1
    self.assertLess(a, float(transforms.max_safe_magnitude(params, x[0], nu)))
    self.assertLess(b, float(transforms.max_safe_magnitude(params, x[0], -nu)))
    kept = transforms.check_split(params, x, y, lam, 0, nu, a, b)
    self.assertLess(float(kept.weighted_gradient_change), 1e-12)
    self.assertLess(float(kept.max_margin_change), 1e-12)
    # swapping the weights (l a/(a+b) on x + a nu) breaks stationarity
    (z1, z2), (l1, l2) = transforms.split(x[0], lam[0], nu, a, b)
    xs = jnp.concatenate([x.at[0].set(z1), z2[None, :]])
    ys = jnp.concatenate([y, y[:1]])
    good = kkt.weighted_gradient(params, xs, ys, jnp.concatenate([lam.at[0].set(l1), l2[None]]))
    bad = kkt.weighted_gradient(params, xs, ys, jnp.concatenate([lam.at[0].set(l2), l1[None]]))
    ref = kkt.weighted_gradient(params, x, y, lam)
    err = lambda t: float(nets.param_norm(jax.tree_util.tree_map(lambda u, v: u - v, t, ref)))
    self.assertLess(err(good), 1e-12)
    self.assertGreater(err(bad), 1e-3)

  def test_margin_moves_unless_orthogonal_to_g(self):
    params, x, y, lam = kkt_set()
    g = transforms.linear_gradient(params, x[0])
    kept = transforms.check_split(params, x, y, lam, 0, g / jnp.linalg.norm(g), 0.1, 0.1)
    self.assertGreater(float(kept.max_margin_change), 0.05)


class MergeTest(absltest.TestCase):

  def test_merge_keeps_stationarity_and_margin(self):
    params, x, y, lam = kkt_set()  # points 0 and 1 (u +- e2, label +1) share a pattern, lam = 1/2 each
    self.assertTrue(bool(transforms.same_pattern(params, x[0], x[1])))
    m, lm = transforms.merge(x[0], x[1], lam[0], lam[1])
    np.testing.assert_allclose(lm, 1.0)
    x_new = x[1:].at[0].set(m)
    y_new, lam_new = y[1:], lam[1:].at[0].set(lm)
    ref = kkt.weighted_gradient(params, x, y, lam)
    got = kkt.weighted_gradient(params, x_new, y_new, lam_new)
    err = nets.param_norm(jax.tree_util.tree_map(lambda u, v: u - v, got, ref))
    self.assertLess(float(err), 1e-12)
    np.testing.assert_allclose(kkt.margins_of(params, m[None, :], y[:1]), 1.0, rtol=1e-12)


def _net_point_direction(seed):
  """A random 2-layer net (d = 5, width 9), a point and a direction."""
  cfg = nets.MLPConfig(d_in=5, widths=(9,), init_scales=None)
  params = nets.init(jax.random.key(seed), cfg, jnp.float64)
  x = jax.random.normal(jax.random.key(seed + 10), (5,), jnp.float64)
  nu = jax.random.normal(jax.random.key(seed + 20), (5,), jnp.float64)
  return params, x, nu


class MagnitudeTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 2, 3)
  def test_closed_form_is_tight(self, seed):
    params, x, nu = _net_point_direction(seed)
    t = float(transforms.max_safe_magnitude(params, x, nu))
    self.assertTrue(np.isfinite(t))
    self.assertTrue(bool(transforms.same_pattern(params, x, x + (1 - 1e-9) * t * nu)))
    self.assertFalse(bool(transforms.same_pattern(params, x, x + (1 + 1e-6) * t * nu)))

  @parameterized.parameters(0, 1, 2, 3)
  def test_symmetric_split_keeps_the_pattern_both_ways(self, seed):
    # brute force on a fine grid of magnitudes, in both directions (issue 11.5a)
    params, x, nu = _net_point_direction(seed)
    t = float(transforms.max_safe_symmetric(params, x, nu))
    grid = np.linspace(0, 3 * t, 3001)[1:]
    same = jax.jit(jax.vmap(lambda s: transforms.same_pattern(params, x, x + s * nu)
                            & transforms.same_pattern(params, x, x - s * nu)))
    keep = list(np.asarray(same(jnp.asarray(grid, x.dtype))))
    first_bad = grid[np.argmin(keep)]
    self.assertLessEqual(abs(first_bad - t), 3 * t / 3000 + 1e-12)
    self.assertEqual(t, min(float(transforms.max_safe_magnitude(params, x, nu)),
                            float(transforms.max_safe_magnitude(params, x, -nu))))

  def test_pair_at_the_kink_flips_at_once(self):
    # neuron 1 has w . x = 0 exactly: moving along +nu (w . nu > 0) activates it at once (issue 11.5b)
    params = ({"w": jnp.array([[1.0, -1.0], [1.0, 0.0]])}, {"w": jnp.array([[1.0], [1.0]])})
    x = jnp.array([0.1, -0.1])  # z_1 = 0.1 - 0.1 = 0 (at the kink), z_2 = -0.1 (inactive)
    nu = jnp.array([1.0, 0.0])  # w_1 . nu = 1 > 0, w_2 . nu = -1
    self.assertEqual(float(transforms.max_safe_magnitude(params, x, nu)), 0.0)
    self.assertFalse(bool(transforms.same_pattern(params, x, x + 1e-9 * nu)))
    # along -nu neuron 1 stays off; neuron 2 (z = -0.1, w . (-nu) = 1) switches on at 0.1
    self.assertAlmostEqual(float(transforms.max_safe_magnitude(params, x, -nu)), 0.1, places=12)
    self.assertEqual(float(transforms.max_safe_symmetric(params, x, nu)), 0.0)


class DeltaCurveTest(absltest.TestCase):

  def test_split_delta_and_margin_curves_by_hand(self):
    # The delta of the split set, recomputed in numpy from the split points and the transported multipliers
    # (lam_i / 2 each for a symmetric split), and the new points' smaller margin. Along the Theorem 5 direction
    # and along a direction kind added by one registry entry (the first axis), which must reach the curves.
    from jaxrecon.noprior import split as split_lib  # noqa: PLC0415
    cfg = nets.MLPConfig(d_in=10, widths=(12,), init_scales=None)
    params = nets.init(jax.random.key(11), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(12), (6, 10), jnp.float64)
    y = jnp.where(nets.apply(params, x) >= 0, 1, -1)
    params_n, _ = kkt.normalize(params, x, y)
    lam = jnp.linspace(0.1, 1.0, 6)
    ts = jnp.asarray([0.0, 0.3, 3.0])
    axis = lambda key, p, x, point: jnp.zeros_like(point).at[0].set(1.0)  # noqa: E731
    with mock.patch.dict(split_lib.DIRECTION_KINDS, {"first_axis": axis}):
      c = split_lib.approx_curves(jax.random.key(0), params_n, x, y, lam, jnp.asarray([2, 4]), ts,
                                  ("svd", "first_axis"))
    np.testing.assert_array_equal(np.asarray(c.nus[:, 1]), np.eye(10)[[0, 0]])
    with self.assertRaisesRegex(ValueError, "unknown direction kind 'first_axis'"):  # the entry is gone again
      split_lib.directions(jax.random.key(0), params_n, x, x[0], ("first_axis",))
    q = np.asarray(kkt.margins_of(params_n, x, y))
    phi = lambda z: np.asarray(nets.apply(params_n, jnp.asarray(z)))  # noqa: E731
    for p, i in enumerate((2, 4)):
      for kind in range(2):
        nu = np.asarray(c.nus[p, kind])
        for k, t in enumerate(np.asarray(ts)):
          qz = float(y[i]) * phi(np.stack([x[i] + t * nu, x[i] - t * nu]))
          others = [float(lam[j]) * (q[j] - 1) for j in range(6) if j != i]
          want = max(others + [0.5 * float(lam[i]) * (v - 1) for v in qz])
          self.assertAlmostEqual(float(c.delta[p, kind, k]), want, places=10)
          self.assertAlmostEqual(float(c.q_min[p, kind, k]), float(qz.min()), places=10)
    self.assertAlmostEqual(float(c.delta0), float(np.max(np.asarray(lam) * (q - 1))), places=10)


class DirectionTest(absltest.TestCase):

  def test_null_space_split_is_exact_for_multiclass_nets(self):
    # Issue 13.5: a K-output net with q = Phi_y - max_{j != y} Phi_j. With nu W_1 = 0 every output of the split
    # points equals the original's (checked on the raw outputs), so every margin, pattern and the weighted
    # gradient of the multiclass margins are kept at any magnitude.
    cfg = nets.MLPConfig(d_in=9, widths=(5, 6), n_out=4, init_scales=None)
    params = nets.init(jax.random.key(5), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(6), (8, 9), jnp.float64)
    y = jnp.arange(8) % 4
    lam = jax.random.uniform(jax.random.key(7), (8,), jnp.float64)
    nu = transforms.first_layer_null_direction(jax.random.key(8), params)
    for a in (0.5, 1e3):
      out = nets.apply(params, jnp.stack([x[3] + a * nu, x[3] - 3 * a * nu]))
      np.testing.assert_allclose(out, jnp.broadcast_to(nets.apply(params, x[3:4]), out.shape), atol=1e-9 * a)
      kept = transforms.check_split(params, x, y, lam, 3, nu, a, 3 * a)
      self.assertLess(float(kept.weighted_gradient_change), 1e-10)
      self.assertLess(float(kept.max_margin_change), 1e-9 * a)
      self.assertTrue(bool(kept.patterns_kept))

  def test_first_layer_null_space_split_is_exact_for_deep_nets_at_any_point(self):
    # width 4 < d = 7: nu W_1 = 0, so no pre-activation moves; the weighted gradient is unchanged for ANY
    # multipliers (no KKT point needed), any magnitude, a 3-layer net
    cfg = nets.MLPConfig(d_in=7, widths=(4, 6), init_scales=None)
    params = nets.init(jax.random.key(1), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(2), (5, 7), jnp.float64)
    y = jnp.array([1, -1, 1, -1, 1])
    lam = jax.random.uniform(jax.random.key(3), (5,), jnp.float64)
    nu = transforms.first_layer_null_direction(jax.random.key(4), params)
    np.testing.assert_allclose(nu @ params[0]["w"], 0.0, atol=1e-12)
    for a in (1.0, 1e3):
      kept = transforms.check_split(params, x, y, lam, 2, nu, a, 2 * a)
      self.assertLess(float(kept.weighted_gradient_change), 1e-11)
      self.assertLess(float(kept.max_margin_change), 1e-9)
      self.assertTrue(bool(kept.patterns_kept))

  def test_svd_direction_bound(self):
    params, x, y, lam = kkt_set()
    nu, sigma = transforms.svd_direction(params, x, x[0])
    u = jnp.linalg.svd(x, full_matrices=True)[2][-1]
    w, v = params[0]["w"], params[1]["w"][:, 0]
    lhs = jnp.abs(u @ w)
    rhs = jnp.abs(v) * jnp.linalg.norm(lam) * sigma
    self.assertTrue(bool(jnp.all(lhs <= rhs + 1e-12)))
    np.testing.assert_allclose(nu @ transforms.linear_gradient(params, x[0]), 0.0, atol=1e-12)


  def test_weighted_directions_are_admissible_and_minimize_their_objective(self):
    # an arbitrary (non-KKT) net, 4 points in R^10: the admissible subspace (orthogonal to the data and to
    # g_A) has dimension 5; the weighted direction must lie in it and beat every other direction there
    cfg = nets.MLPConfig(d_in=10, widths=(12,), init_scales=None)
    params = nets.init(jax.random.key(5), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(6), (4, 10), jnp.float64)
    g = transforms.linear_gradient(params, x[1])
    w, c = params[0]["w"], transforms.neuron_importance(params) ** 2
    for kind, weights in (("importance", c), ("flip", c / (x[1] @ w) ** 2)):
      nu = transforms.weighted_direction(params, x, x[1], kind)
      self.assertAlmostEqual(float(jnp.linalg.norm(nu)), 1.0, places=10)
      np.testing.assert_allclose(x @ nu, 0.0, atol=1e-10)
      self.assertAlmostEqual(float(g @ nu), 0.0, places=10)
      objective = lambda u, weights=weights: float(jnp.sum(weights * (u @ w) ** 2))  # noqa: E731
      for k in range(20):
        other = transforms.orthogonal_direction(jax.random.key(10 + k), x, g[:, None])
        self.assertLessEqual(objective(nu), objective(other) * (1 + 1e-9))
    with self.assertRaisesRegex(ValueError, "unknown direction kind"):
      transforms.weighted_direction(params, x, x[1], "nope")

  def test_split_stationarity_change_is_the_weighted_gradient_difference(self):
    params, x, y, lam = kkt_set()
    theta = float(nets.param_norm(params))
    exact = transforms.orthogonal_direction(jax.random.key(0), x)
    rough = jax.random.normal(jax.random.key(1), (x.shape[1],), x.dtype)  # flips neurons at this size
    for nu, a, b in ((exact, 50.0, 20.0), (rough, 30.0, 10.0)):
      change = transforms.split_stationarity_change(params, x[0], y[0].astype(x.dtype), lam[0], nu, a, b)
      kept = transforms.check_split(params, x, y, lam, 0, nu, a, b)
      np.testing.assert_allclose(float(nets.param_norm(change)) / theta, float(kept.weighted_gradient_change),
                                 rtol=1e-9, atol=1e-14)
    self.assertGreater(float(kept.weighted_gradient_change), 1e-3)  # the rough split did change something

  def test_vmapped_over_magnitudes_and_directions_equals_a_loop(self):
    params, x, y, lam = kkt_set()
    nus = jax.random.normal(jax.random.key(2), (3, x.shape[1]), x.dtype)
    ts = jnp.asarray([0.1, 1.0, 10.0, 100.0], x.dtype)
    norm = lambda nu, t: nets.param_norm(transforms.split_stationarity_change(  # noqa: E731
        params, x[0], y[0].astype(x.dtype), lam[0], nu, t, 2 * t))
    batched = jax.jit(jax.vmap(lambda nu: jax.vmap(lambda t: norm(nu, t))(ts)))(nus)
    safe = jax.vmap(lambda nu: transforms.max_safe_magnitude(params, x[0], nu))(nus)
    for i in range(3):
      self.assertEqual(float(safe[i]), float(transforms.max_safe_magnitude(params, x[0], nus[i])))
      for j in range(4):
        np.testing.assert_allclose(float(batched[i, j]), float(norm(nus[i], ts[j])), rtol=1e-12, atol=1e-15)

if __name__ == "__main__":
  absltest.main()
