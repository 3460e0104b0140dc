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
