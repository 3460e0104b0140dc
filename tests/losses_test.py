from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import losses

EXTREME = [-1e4, -1e3, -100.0, -1.0, 0.0, 1.0, 30.0, 69.0776, 100.0, 1e3, 1e4]


class LossesTest(chex.TestCase, parameterized.TestCase):

  @parameterized.product(name=["logistic", "exponential"], dtype=[jnp.float32, jnp.float64])
  def test_finite_values_and_gradients_at_extreme_margins(self, name, dtype):
    q = jnp.asarray(EXTREME, dtype)
    f = losses.get_loss(name)
    vals = f(q)
    grads = jax.vmap(jax.grad(lambda t: f(t)))(q)
    chex.assert_tree_all_finite((vals, grads))
    self.assertEqual(vals.dtype, dtype)
    self.assertTrue(bool(jnp.all(vals >= 0)))
    self.assertTrue(bool(jnp.all(jnp.diff(vals) <= 0)))  # non-increasing in q
    self.assertTrue(bool(jnp.all(grads[:-3] < 0)))      # still pushing where it is representable

  @chex.variants(with_jit=True, without_jit=True)
  def test_log_mean_loss_against_a_direct_sum_jit_and_eager(self):
    q = jnp.asarray([-3.0, 0.0, 0.5, 2.0, 40.0], jnp.float64)
    for name, direct in (("logistic", np.log1p(np.exp(-np.asarray(q)))), ("exponential", np.exp(-np.asarray(q)))):
      got = self.variant(lambda t, name=name: losses.log_mean_loss(name, t))(q)
      np.testing.assert_allclose(float(got), np.log(np.mean(direct)), rtol=1e-12)

  @parameterized.parameters(jnp.float32, jnp.float64)
  def test_tiny_losses_stay_meaningful(self, dtype):
    # log(1 + e^-q) ~ e^-q: 1e-30 at q = 69.0776, with full relative precision.
    q = jnp.asarray([30.0, 50.0, 69.0776], dtype)
    expect = np.exp(-np.asarray([30.0, 50.0, 69.0776]))
    np.testing.assert_allclose(losses.logistic(q), expect, rtol=1e-5)
    np.testing.assert_allclose(losses.exponential(q), expect, rtol=1e-5)
    np.testing.assert_allclose(losses.loss_derivative("logistic", q), expect, rtol=1e-5)

  def test_exact_where_representable(self):
    q = jnp.linspace(-50.0, 50.0, 101, dtype=jnp.float64)
    np.testing.assert_allclose(losses.logistic(q), np.log1p(np.exp(-np.asarray(q))), rtol=1e-12)
    np.testing.assert_allclose(losses.exponential(q), np.exp(-np.asarray(q)), rtol=1e-12)

  def test_float32_with_x64_off(self):
    with jax.enable_x64(False):
      q = jnp.asarray(EXTREME)
      self.assertEqual(q.dtype, jnp.float32)
      chex.assert_tree_all_finite((losses.logistic(q), losses.exponential(q),
                                   jax.vmap(jax.grad(losses.exponential))(q)))

  def test_multiclass_margins_and_cotangent(self):
    out = jnp.asarray([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    y = jnp.asarray([0, 2])
    np.testing.assert_allclose(losses.margins(out, y), [1.0, -6.0])
    np.testing.assert_allclose(losses.margin_cotangent(out, y), [[1, 0, -1], [0, -1, 1]])
    # binary
    np.testing.assert_allclose(losses.margins(jnp.asarray([2.0, -3.0]), jnp.asarray([-1, -1])), [-2, 3])

  def test_unknown_loss(self):
    with self.assertRaisesRegex(ValueError, "unknown loss"):
      losses.get_loss("hinge")


class RegistryTest(absltest.TestCase):
  """Issue 25: a new loss is one registry entry; training, the KKT report and the attack run with it."""

  def test_a_new_loss_by_one_entry(self):
    import os  # noqa: PLC0415
    from unittest import mock  # noqa: PLC0415
    from jaxrecon import audit, data, kkt, train  # noqa: PLC0415
    from jaxrecon.attack import AttackConfig, SweepConfig  # noqa: PLC0415
    from jaxrecon.experiments import train as train_job  # noqa: PLC0415
    # a "sharp logistic" l(q) = log(1 + e^{-2q}) / 2, given by its value only: the other faces are derived
    entry = losses.Loss(lambda q: 0.5 * jax.nn.softplus(-2.0 * q))
    with mock.patch.dict(losses.LOSSES, {"sharp_logistic": entry}):
      q = jnp.linspace(-5.0, 20.0, 11, dtype=jnp.float64)
      # the derived -l'(q) against the hand-derived sigmoid(-2q), and log(-l') against its log
      np.testing.assert_allclose(losses.loss_derivative("sharp_logistic", q), jax.nn.sigmoid(-2.0 * q), rtol=1e-12)
      np.testing.assert_allclose(losses.log_loss_derivative("sharp_logistic", q),
                                 np.log(jax.nn.sigmoid(-2.0 * q)), rtol=1e-9, atol=1e-14)
      d = self.create_tempdir().full_path
      cfg = train.TrainConfig(data=data.DataConfig(name="sphere", n=12, d=8, n_test=8), widths=(16,),
                              init_scales=(0.3,), optimizer="gd", lr=0.5, steps=100, log_every=50,
                              relaxed=False, loss="sharp_logistic")
      summary = train_job.run(cfg, os.path.join(d, "t"), log=lambda *_: None)
      self.assertLess(summary["final_loss"], 0.5 * float(jax.nn.softplus(0.0)))  # it trained (l(0) = log(2)/2)
      _, ds, ckpts = train_job.load_run(os.path.join(d, "t"))
      params = ckpts[-1][1]
      rep = kkt.summarize(kkt.report(params, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train),
                                     loss="sharp_logistic", relaxed=False))
      self.assertTrue(0.0 <= rep["eps_rel"] <= rep["cert_eps_rel"] + 1e-9)  # the certificate bounds eps_rel
      rec = audit.reconstruct(jax.random.key(0), params, n_train=12, attack=AttackConfig(steps=10, log_every=5),
                              sweep=SweepConfig(configs=2))
      self.assertEqual(rec.candidates.shape[1], 8)
    with self.assertRaisesRegex(ValueError, "unknown loss 'sharp_logistic'"):  # gone with the entry
      losses.get("sharp_logistic")


if __name__ == "__main__":
  absltest.main()


class LogLossTest(chex.TestCase, parameterized.TestCase):

  @parameterized.product(name=["logistic", "exponential"], dtype=[jnp.float32, jnp.float64])
  def test_log_loss_matches_and_never_underflows(self, name, dtype):
    q = jnp.asarray([-1e4, -50.0, -1.0, 0.0, 2.0, 29.0, 31.0, 60.0, 800.0, 1e4], dtype)
    logl = losses.log_loss(name, q)
    grads = jax.vmap(jax.grad(lambda t: losses.log_loss(name, t)))(q)
    chex.assert_tree_all_finite((logl, grads))
    mid = np.abs(np.asarray(q)) < 60
    with np.errstate(divide="ignore"):
      ref = np.log(np.asarray(losses.get_loss(name)(q.astype(jnp.float64))))
    np.testing.assert_allclose(np.asarray(logl)[mid], ref[mid], rtol=1e-5 if dtype == jnp.float32 else 1e-10)
    np.testing.assert_allclose(logl[-2:], -np.asarray(q[-2:]), rtol=1e-6)  # log l(q) -> -q

  def test_grad_of_log_mean_loss_is_normalized_gradient(self):
    q = jnp.asarray([0.5, 2.0, 3.0, 10.0], jnp.float64)
    for name in ("logistic", "exponential"):
      g_log = jax.grad(lambda t: losses.log_mean_loss(name, t))(q)
      g = jax.grad(lambda t: losses.mean_loss(name, t))(q) / losses.mean_loss(name, q)
      np.testing.assert_allclose(g_log, g, rtol=1e-10)
    # deep: the loss underflows, its log and the normalized gradient do not
    deep = jnp.asarray([800.0, 801.0, 900.0], jnp.float64)
    self.assertEqual(float(losses.mean_loss("logistic", deep)), 0.0)
    g = jax.grad(lambda t: losses.log_mean_loss("logistic", t))(deep)
    np.testing.assert_allclose(g, -np.array([1, np.exp(-1), 0]) / (1 + np.exp(-1)), rtol=1e-10, atol=1e-40)
