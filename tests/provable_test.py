from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import stats
from jaxrecon import provable
from jaxrecon import train

S2 = np.sqrt(2.0)


def net(w, b, v):
  return ({"w": jnp.asarray([w], jnp.float64), "b": jnp.asarray(b, jnp.float64)},
          {"w": jnp.asarray(v, jnp.float64)[:, None]})


def two_point_net():
  """An exact KKT point of (P) for x = -1 (y = -1), x = +1 (y = +1), built by hand (derived in the docstring
  of the test): Phi(x) = relu((x + 1)/sqrt 2) - relu((1 - x)/sqrt 2), lambda = 1/sqrt 2 each, margin sqrt 2.
  Neuron 1 is active on x > -1 only, so w = v lam y x, b = v lam y over x = +1 give w = b = v lam and
  v = lam (w + b) forces lam = 1/sqrt 2; neuron 2 mirrors it."""
  params = net([1 / S2, -1 / S2], [1 / S2, 1 / S2], [1.0, -1.0])
  return params, jnp.array([[-1.0], [1.0]]), jnp.array([-1, 1]), np.array([1 / S2, 1 / S2])


def two_point_net_at(a):
  """The same construction for x = -a, +a (a > 1): lambda = 1/sqrt(1 + a^2), kinks at -+1/a, margin
  sqrt(1 + a^2); Phi is flat-free and its middle piece (slope 2 lam a) never reaches the margin."""
  lam = 1 / np.sqrt(1 + a * a)
  params = net([lam * a, -lam * a], [lam, lam], [1.0, -1.0])
  return params, jnp.array([[-a], [a]]), jnp.array([-1, 1]), np.array([lam, lam])


class KKTFactsTest(parameterized.TestCase):

  def test_hand_built_net_is_an_exact_kkt_point(self):
    params, x, y, lam = two_point_net()
    rep = kkt.report(params, x, y, relaxed=False)
    self.assertLess(float(rep.eps_rel), 1e-12)
    np.testing.assert_allclose(rep.lam, lam, rtol=1e-9)  # 2-homogeneous: lam does not change with scale
    np.testing.assert_allclose(provable.balancedness(params), 0.0, atol=1e-15)
    np.testing.assert_allclose(provable.kink_identity_residual(params, x, y, lam), 0.0, atol=1e-15)
    # THEORY.md's "sum lam y (x - kink) = 0" does not hold: the sum is (w^2 + b^2) / (v w) = v / w here
    w, v = np.asarray(params[0]["w"][0]), np.asarray(params[1]["w"][:, 0])
    np.testing.assert_allclose(provable.kink_sum(params, x, y, lam), v / w, rtol=1e-12)

  def test_identities_detect_a_non_kkt_net(self):
    params, x, y, lam = two_point_net()
    bad = net([1 / S2, -1 / S2], [0.3, 1 / S2], [1.0, -1.0])
    self.assertGreater(abs(provable.balancedness(bad)[0]), 0.1)
    self.assertGreater(provable.kink_identity_residual(bad, x, y, lam)[0], 0.1)


class UnivariateTest(parameterized.TestCase):

  @parameterized.parameters(1.5, 2.0, 3.0)
  def test_exact_kkt_family(self, a):
    params, x, y, lam = two_point_net_at(a)
    rep = kkt.report(params, x, y, relaxed=False)
    self.assertLess(float(rep.eps_rel), 1e-12)
    self.assertAlmostEqual(float(rep.q_min), np.sqrt(1 + a * a), places=12)
    np.testing.assert_allclose(provable.balancedness(params), 0.0, atol=1e-15)
    np.testing.assert_allclose(provable.kink_identity_residual(params, x, y, lam), 0.0, atol=1e-14)
    res = provable.univariate_candidates(params, float(rep.q_min))
    np.testing.assert_allclose(res.candidates, [-a, a], atol=1e-12)
    np.testing.assert_allclose(res.kinks, [-1 / a, 1 / a], atol=1e-12)

  def test_recovers_training_points_of_exact_net(self):
    params, x, _, _ = two_point_net()
    m = provable.margin_from_leak(params, x[1])
    self.assertAlmostEqual(m, S2, places=12)
    res = provable.univariate_candidates(params, m)
    np.testing.assert_allclose(res.candidates, [-1.0, 1.0], atol=1e-12)
    self.assertEqual(provable.fraction_training(res.candidates, x, 1e-9), (1.0, 1.0))
    np.testing.assert_allclose(res.kinks, [-1.0, 1.0])

  def test_negligible_neurons_are_filtered(self):
    params, x, _, _ = two_point_net()
    # two extra neurons with |v w| ~ 1e-9: their kinks would cut the pieces; dropped, the output is unchanged
    extra = net([1 / S2, -1 / S2, 1.0, -1.0], [1 / S2, 1 / S2, -0.3, 0.2], [1.0, -1.0, 1e-9, -1e-9])
    res = provable.univariate_candidates(extra, S2)
    self.assertEqual(res.kept_neurons, 2)
    np.testing.assert_allclose(res.candidates, [-1.0, 1.0], atol=1e-8)
    every = provable.univariate_candidates(extra, S2, neuron_tol=0.0)
    self.assertEqual(every.kept_neurons, 4)
    self.assertLen(every.kinks, 4)

  def test_flat_piece_endpoints(self):
    # Phi = relu(x + 1) - relu(x - 1): flat at 2 for x >= 1, flat at 0 for x <= -1, slope 1 between
    params = net([1.0, 1.0], [1.0, -1.0], [1.0, -1.0])
    res = provable.univariate_candidates(params, 2.0)
    self.assertEqual(res.flat_pieces, 1)
    np.testing.assert_allclose(res.candidates, [1.0], atol=1e-12)
    res = provable.univariate_candidates(params, 1.0)  # crossing inside the middle piece
    np.testing.assert_allclose(res.candidates, [0.0], atol=1e-12)

  def test_needs_a_univariate_bias_net(self):
    with self.assertRaisesRegex(ValueError, "first-layer bias"):
      provable.univariate_candidates(({"w": jnp.ones((1, 2))}, {"w": jnp.ones((2, 1))}), 1.0)


class MembershipTest(absltest.TestCase):

  def test_scores_separate_members_on_nearly_orthogonal_data(self):
    d, n = 400, 4
    key_tr, key_fresh, key_fit = jax.random.split(jax.random.key(0), 3)
    x = data_lib.sphere(key_tr, 2 * n, d, dtype=jnp.float64)[0] * np.sqrt(d)
    y = jnp.where(jnp.arange(2 * n) % 2 == 0, 1, -1)
    cfg = train.TrainConfig(widths=(64,), init_scales=(1e-3, 1e-3), optimizer="log_normalized_gd", lr=0.5,
                            steps=300)
    params, q, _ = provable.fit_many(key_fit, x[None, :n], y[None, :n], cfg)
    params = jax.tree_util.tree_map(lambda a: a[0], params)
    self.assertGreater(float(q.min()), 0.0)
    m = float(q.min())
    fresh = data_lib.sphere(key_fresh, 50, d, dtype=jnp.float64)[0] * np.sqrt(d)
    sm = np.asarray(provable.membership_score(params, x[:n], m))
    sn = np.asarray(provable.membership_score(params, fresh, m))
    rep = provable.membership_report(sm, sn)
    self.assertEqual(rep["auc"], 1.0)
    self.assertEqual(rep["tpr"], 1.0)
    self.assertEqual(rep["fpr"], 0.0)
    self.assertEqual(rep["members_within_10pct"], 1.0)

  def test_tpr_interval_against_the_binomial_one(self):
    # Scores whose TPR at FPR 1% is exactly the fraction of members above every non-member: the bootstrap
    # interval of that fraction should match the normal binomial interval (a formula, not the code); perfectly
    # separated scores give [1, 1].
    rng = np.random.default_rng(5)
    sn = rng.uniform(0.0, 1.0, 4000)
    sm = np.concatenate([rng.uniform(2.0, 3.0, 300), rng.uniform(0.0, 0.5, 300)])  # half clearly above
    lo, hi = stats.tpr_at_fpr_interval(sm, sn, 0.01, n_boot=1000)
    half = 1.96 * np.sqrt(0.25 / 600)
    self.assertAlmostEqual(hi - lo, 2 * half, delta=0.35 * half)
    self.assertLess(lo, 0.5 + 0.02)
    self.assertGreater(hi, 0.5 - 0.02)
    self.assertEqual(stats.tpr_at_fpr_interval(sm[:300], sn, 0.01, n_boot=50), (1.0, 1.0))

  def test_roc_auc_matches_pair_count(self):
    rng = np.random.default_rng(0)
    sm, sn = rng.integers(0, 4, 30).astype(float), rng.integers(0, 4, 50).astype(float)
    fpr, tpr = stats.roc(sm, sn)
    self.assertEqual((fpr[0], tpr[0], fpr[-1], tpr[-1]), (0.0, 0.0, 1.0, 1.0))
    # the area under stats.roc's curve (trapezoids) is the pair count, ties half
    pairs = np.mean([(a > b) + 0.5 * (a == b) for a in sm for b in sn])
    self.assertAlmostEqual(float(np.trapezoid(tpr, fpr)), pairs, places=12)
    self.assertAlmostEqual(provable.membership_report(sm, sn)["auc"], pairs, places=12)


class TrainedTest(absltest.TestCase):

  def test_balancedness_after_long_training(self):
    # Gradient flow conserves v_j^2 - ||w_j||^2 - b_j^2 (about 0 from a small init) while the norms grow, so
    # the relative imbalance shrinks; GD adds a discretization error of order lr.
    key_x, key_fit = jax.random.split(jax.random.key(1))
    x = jnp.sort(jax.random.uniform(key_x, (3, 6, 1), jnp.float64, -1, 1), axis=1)
    y = jnp.tile(jnp.array([-1, -1, -1, 1, 1, 1]), (3, 1))
    cfg = train.TrainConfig(widths=(50,), init_scales=(0.05, 0.05), optimizer="gd", lr=0.1, steps=4000)
    params, q, _ = provable.fit_many(key_fit, x, y, cfg)
    self.assertGreater(float(q.min()), 0.0)
    for s in range(3):
      p = jax.tree_util.tree_map(lambda a, s=s: a[s], params)
      v = np.abs(np.asarray(p[1]["w"][:, 0]))
      strong = v > 0.1 * v.max()
      self.assertLess(float(np.max(np.abs(provable.balancedness(p)[strong]))), 0.05)
      init = jax.tree_util.tree_map(lambda a, s=s: a[s], provable.init_many(key_fit, 1, 3, cfg))
      v0 = np.abs(np.asarray(init[1]["w"][:, 0]))
      # at init the same neurons are far from balanced (|w|, |b|, |v| are independent draws)
      self.assertGreater(float(np.max(np.abs(provable.balancedness(init)[v0 > 0.1 * v0.max()]))), 0.3)
