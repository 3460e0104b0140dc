"""The loss-normalized step rules as optax transformations, against their defining formulas."""

import dataclasses
from unittest import mock

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import train
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

  def test_relative_backs_off_when_the_loss_rises(self):
    # the relative step's length over a sequence of losses, against the rule written out by hand: the scale
    # halves after a rise and recovers by 1.25 (at most 1) after a fall; a zero gradient gives no step
    params, grads = _tree(jax.random.key(0), 3.0), _tree(jax.random.key(1), 0.01)
    t = schedules.scale_by_loss("relative", 0.03)
    state, scale, prev = t.init(params), 1.0, np.inf
    for log_loss in (-5.0, -6.0, -5.5, -5.2, -7.0, -8.0, -9.0, -8.9):
      upd, state = t.update(grads, state, params, log_loss=jnp.float32(log_loss))
      scale = scale * 0.5 if log_loss > prev else min(scale * 1.25, 1.0)
      prev = log_loss
      rel = float(optax.tree.norm(upd) / optax.tree.norm(params))
      np.testing.assert_allclose(rel, 0.03 * scale / max(1.0, -log_loss), rtol=1e-5)
    zero = jax.tree_util.tree_map(jnp.zeros_like, grads)
    upd, _ = t.update(zero, state, params, log_loss=jnp.float32(-900.0))
    self.assertEqual(float(optax.tree.norm(upd)), 0.0)

  def test_default_rule_on_a_point_that_never_separates(self):
    # 20 points on the sphere in R^10, width 8: one point's hidden units all die (output 0, gradient 0), so the
    # loss stalls at log(2) / 20; the step used to grow ||theta|| until 0 x inf gave NaN at step 600. Now the
    # run ends with the point unfitted and every number finite.
    cfg = train.TrainConfig(data=data_lib.DataConfig(n=20, d=10), widths=(8,), steps=2000, relaxed=False)
    ds = data_lib.load(jax.random.key(0), cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = nets.init(jax.random.key(0), cfg.mlp(10, 1), jnp.float64)  # a dead point; NaN before the fix
    opt, normalized = train.make_optimizer(cfg)
    run = train.make_chunk_runner(train.make_train_step(cfg, opt, normalized))
    state = run(train.TrainState(params, opt.init(params)), x, y, 2000)
    for v in jax.tree_util.tree_leaves(state):
      self.assertTrue(bool(jnp.all(jnp.isfinite(v))))
    q = kkt.margins_of(state.params, x, y)
    self.assertLessEqual(float(jnp.min(q)), 0.0)  # the dead point stays unfitted: not reported as fitted
    self.assertGreater(float(state.opt_state[0].scale), 0.0)

  def test_unknown_rule_is_named(self):
    with self.assertRaisesRegex(ValueError, "unknown loss-normalized rule 'cosine'"):
      schedules.scale_by_loss("cosine", 0.1)



class RegistryTest(absltest.TestCase):

  def test_a_new_step_rule_by_one_entry(self):
    # A rule whose factor is Loss itself turns the step along grad log Loss into plain GD on the loss: added as
    # one STEP_RULES entry, it is the optimizer 'loss_gd' at once, and trains exactly as optimizer 'gd' does.
    plain = schedules.StepRule(lambda updates, state, params, log_loss, lr: (jnp.exp(log_loss), state))
    cfg = train.TrainConfig(data=data_lib.DataConfig(n=12, d=6), widths=(8,), optimizer="gd", lr=0.5, steps=30,
                            relaxed=False)
    ds = data_lib.load(jax.random.key(0), cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = nets.init(jax.random.key(1), cfg.mlp(6, 1), jnp.float64)
    ends = {}
    with mock.patch.dict(schedules.STEP_RULES, {"loss": plain}):
      self.assertIn("loss_gd", train.gd_rules())
      for name in ("gd", "loss_gd"):
        c = dataclasses.replace(cfg, optimizer=name)
        train.validate(c)
        opt, normalized = train.make_optimizer(c)
        self.assertEqual(normalized, name == "loss_gd")
        run = train.make_chunk_runner(train.make_train_step(c, opt, normalized))
        ends[name] = run(train.TrainState(params, opt.init(params)), x, y, 30).params
    self.assertNotIn("loss_gd", train.gd_rules())
    for a, b in zip(jax.tree_util.tree_leaves(ends["gd"]), jax.tree_util.tree_leaves(ends["loss_gd"])):
      np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    self.assertGreater(float(jnp.abs(ends["gd"][0]["w"] - params[0]["w"]).max()), 1e-3)  # it did train

if __name__ == "__main__":
  absltest.main()
