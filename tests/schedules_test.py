"""The loss-normalized step rules as optax transformations, against their defining formulas."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon import nets
from jaxrecon.optim import schedules


def _tree(key, scale):
  k1, k2 = jax.random.split(key)
  return ({"w": scale * jax.random.normal(k1, (5, 7), jnp.float32)},
          {"w": scale * jax.random.normal(k2, (7, 1), jnp.float32)})


class ScheduleTest(absltest.TestCase):

  def test_relative_step_has_the_stated_relative_length(self):
    params, grads = _tree(jax.random.key(0), 3.0), _tree(jax.random.key(1), 0.01)
    opt = optax.chain(schedules.scale_by_loss("relative", 0.03), optax.sgd(1.0))
    for log_loss in (-0.2, -1.0, -7.5, -400.0):
      upd, _ = opt.update(grads, opt.init(params), params, log_loss=jnp.float32(log_loss))
      rel = float(optax.tree.norm(upd) / optax.tree.norm(params))
      np.testing.assert_allclose(rel, 0.03 / max(1.0, -log_loss), rtol=1e-5)
      # along -grad: the cosine with the gradient is -1
      cos = float(optax.tree.vdot(upd, grads) / (optax.tree.norm(upd) * optax.tree.norm(grads)))
      np.testing.assert_allclose(cos, -1.0, rtol=1e-5)

  def test_log_normalized_factor_and_cap(self):
    params, grads = _tree(jax.random.key(2), 1.0), _tree(jax.random.key(3), 1.0)
    degree = nets.degree(params)
    t = schedules.scale_by_loss("log_normalized", 0.1)
    upd, _ = t.update(grads, t.init(params), params, log_loss=jnp.float32(-9.0))
    np.testing.assert_allclose(upd[0]["w"], grads[0]["w"] * 9.0 ** -(2 - 2 / degree), rtol=1e-5)
    capped = schedules.scale_by_loss("normalized", 0.1, lr_cap=2.0)
    for log_loss in (-1.0, -5.0):  # lr / Loss = 0.1 e^{-log L}: capped at 2 once it exceeds it
      upd, _ = capped.update(grads, capped.init(params), params, log_loss=jnp.float32(log_loss))
      factor = min(1.0, 2.0 * np.exp(log_loss) / 0.1)
      np.testing.assert_allclose(upd[0]["w"], grads[0]["w"] * factor, rtol=1e-5)

  def test_unknown_rule_is_named(self):
    with self.assertRaisesRegex(ValueError, "unknown loss-normalized rule 'cosine'"):
      schedules.scale_by_loss("cosine", 0.1)


if __name__ == "__main__":
  absltest.main()
