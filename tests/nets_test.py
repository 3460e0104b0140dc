from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import nets


class NetsTest(chex.TestCase, parameterized.TestCase):

  @parameterized.product(widths=[(7,), (6, 5), (4, 5, 3)], first_bias=[False, True], n_out=[1, 3])
  def test_homogeneity(self, widths, first_bias, n_out):
    cfg = nets.MLPConfig(d_in=4, widths=widths, n_out=n_out, init_scales=None, first_bias=first_bias)
    params = nets.init(jax.random.key(0), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(1), (9, 4), jnp.float64)
    c = 2.7
    out = nets.apply(params, x)
    out_c = nets.apply(nets.scale_params(params, c), x)
    self.assertEqual(cfg.degree, len(widths) + 1)
    self.assertEqual(nets.degree(params), cfg.degree)
    chex.assert_trees_all_close(out_c, c ** cfg.degree * out, rtol=1e-12)
    chex.assert_shape(out, (9,) if n_out == 1 else (9, n_out))

  def test_deeper_bias_would_break_homogeneity_but_first_bias_does_not(self):
    # The first-layer bias is a weight on an appended constant input: same outputs.
    cfg = nets.MLPConfig(d_in=3, widths=(5,), init_scales=None, first_bias=True)
    p = nets.init(jax.random.key(0), cfg, jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4, 3), jnp.float64)
    w_aug = jnp.concatenate([p[0]["w"], p[0]["b"][None, :]], axis=0)
    x_aug = jnp.concatenate([x, jnp.ones((4, 1))], axis=1)
    no_bias = ({"w": w_aug}, p[1])
    chex.assert_trees_all_close(nets.apply(p, x), nets.apply(no_bias, x_aug), rtol=1e-12)

  def test_init_scales(self):
    cfg = nets.MLPConfig(d_in=400, widths=(300, 200), init_scales=(1e-4,))
    p = nets.init(jax.random.key(0), cfg, jnp.float64)
    self.assertAlmostEqual(float(jnp.std(p[0]["w"])), 1e-4, delta=2e-6)
    bound1 = 1 / np.sqrt(300)
    self.assertLessEqual(float(jnp.max(jnp.abs(p[1]["w"]))), bound1)
    self.assertGreater(float(jnp.max(jnp.abs(p[1]["w"]))), 0.95 * bound1)  # uniform, not normal
    chex.assert_shape([p[0]["w"], p[1]["w"], p[2]["w"]], [(400, 300), (300, 200), (200, 1)])
    self.assertEqual(nets.num_params(p), 400 * 300 + 300 * 200 + 200)

  def test_bad_config(self):
    with self.assertRaises(ValueError):
      nets.MLPConfig(d_in=3, widths=())
    with self.assertRaises(ValueError):
      nets.MLPConfig(d_in=3, widths=(4,), init_scales=(1.0, 1.0, 1.0))


if __name__ == "__main__":
  absltest.main()
