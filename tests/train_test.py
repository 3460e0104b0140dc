import os

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.experiments import train as train_job
from jaxrecon import data
from jaxrecon import train
from jaxrecon import workdir as wd


def tiny_config(**kw):
  base = dict(data=data.DataConfig(name="sphere", n=24, d=8, n_test=16), widths=(16,),
              init_scales=(0.1,), optimizer="gd", lr=0.5, steps=120, log_every=20, relaxed=False)
  base.update(kw)
  return train.TrainConfig(**base)


def quiet(*a, **k):
  del a, k


class Interrupt(Exception):
  pass


class TrainTest(chex.TestCase, parameterized.TestCase):

  def test_checkpoint_steps_are_log_spaced(self):
    self.assertEqual(train.checkpoint_steps(300), [1, 2, 5, 10, 20, 50, 100, 200, 300])
    self.assertEqual(train.checkpoint_steps(1000), [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])

  def test_run_writes_workdir(self):
    d = self.create_tempdir().full_path
    summary = train_job.run(tiny_config(relaxed=True), d, log=quiet)  # the relaxed residual in the summary
    for f in ("config.json", "data.npz", "metrics.jsonl", "summary.json"):
      self.assertTrue(os.path.exists(os.path.join(d, f)), f)
    for k in ("final_loss", "train_acc", "test_acc", "q_min", "normalized_margin", "eps_rel", "delta",
              "steps", "wall_s", "eps_rel_relaxed", "freed_pairs", "relaxed_capped"):
      self.assertIn(k, summary)
    self.assertLessEqual(summary["eps_rel_relaxed"], summary["eps_rel"] + 1e-9)  # freeing pairs only helps
    self.assertEqual(summary["steps"], 120)
    self.assertEqual(summary["train_acc"], 1.0)
    rows = wd.read_jsonl(os.path.join(d, "metrics.jsonl"))
    self.assertEqual([r["step"] for r in rows], [1, 2, 5, 10, 20, 40, 50, 60, 80, 100, 120])
    self.assertEqual([s for s, _ in wd.list_checkpoints(d)], [0, 1, 2, 5, 10, 20, 50, 100, 120])
    cfg, ds, ckpts = train_job.load_run(d)
    self.assertEqual(cfg, tiny_config(relaxed=True))
    self.assertEqual(ds.x_train.shape, (24, 8))

  @parameterized.parameters("gd", "normalized_gd", "sumo")
  def test_resume_after_kill_equals_uninterrupted(self, optimizer):
    # sumo: its state holds the randomized projector's key, checkpointed as raw key data (issue 11.7)
    cfg = tiny_config(optimizer=optimizer, lr={"normalized_gd": 0.05, "sumo": 0.01}.get(optimizer, 0.5),
                      momentum=0.9)
    ref_dir, dir_ = self.create_tempdir().full_path, self.create_tempdir().full_path
    train_job.run(cfg, ref_dir, log=quiet)

    def killer(msg):
      if msg.startswith("step       80"):
        raise Interrupt()
    with self.assertRaises(Interrupt):
      train_job.run(cfg, dir_, log=killer)
    self.assertEqual(wd.latest_checkpoint(dir_)[0], 50)  # killed after a row past the last checkpoint
    train_job.run(cfg, dir_, log=quiet)
    _, _, a = train_job.load_run(ref_dir)
    _, _, b = train_job.load_run(dir_)
    chex.assert_trees_all_equal(a[-1][1], b[-1][1])
    steps = [r["step"] for r in wd.read_jsonl(os.path.join(dir_, "metrics.jsonl"))]
    self.assertEqual(steps, sorted(set(steps)))  # no duplicated rows after the resume

  def test_resume_refuses_a_different_config(self):
    d = self.create_tempdir().full_path
    train_job.run(tiny_config(steps=20), d, log=quiet)
    with self.assertRaisesRegex(ValueError, "different config.*lr"):
      train_job.run(tiny_config(steps=40, lr=0.1), d, log=quiet)
    train_job.run(tiny_config(steps=40), d, log=quiet)  # more steps is fine
    self.assertEqual(wd.latest_checkpoint(d)[0], 40)

  def test_normalized_margin_does_not_decrease_late(self):
    d = self.create_tempdir().full_path
    train_job.run(tiny_config(steps=2000, log_every=100, lr=0.5), d, log=quiet)
    rows = wd.read_jsonl(os.path.join(d, "metrics.jsonl"))
    late = np.array([r["normalized_margin"] for r in rows if r["step"] >= 500])
    self.assertGreater(late[0], 0)
    self.assertTrue(np.all(np.diff(late) >= -1e-9 * np.abs(late[:-1])), late)

  def test_normalized_steps_go_below_underflow(self):
    d = self.create_tempdir().full_path
    s = train_job.run(tiny_config(optimizer="normalized_gd", lr=0.3, steps=400), d, log=quiet)
    self.assertLess(s["final_log10_loss"], -330)  # below float64's smallest number
    self.assertTrue(np.isfinite(s["eps_rel"]))

  @parameterized.parameters((0.12, True), (10.0, False))
  def test_lr_cap_limits_the_effective_step(self, cap, capped):
    cfg = tiny_config(optimizer="normalized_gd", lr=0.1, lr_cap=cap)
    opt, normalized = train.make_optimizer(cfg)
    ds = data.load(jax.random.key(0), cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = train.nets.init(jax.random.key(1), cfg.mlp(8, 1), jnp.float64)
    loss = train.loss_fn(params, x, y, "logistic")
    self.assertLess(float(loss), 0.1 / 0.12)  # lr / loss > 0.12: the small cap binds, the large does not
    step = train.make_train_step(cfg, opt, normalized)
    new, _ = step(train.TrainState(params, opt.init(params)), x, y)
    grads = jax.grad(train.loss_fn)(params, x, y, "logistic")
    lr_eff = cap if capped else 0.1 / loss
    expect = jax.tree_util.tree_map(lambda p, g: p - lr_eff * g, params, grads)
    chex.assert_trees_all_close(new.params, expect, rtol=1e-10)

  @parameterized.parameters((1,), (2,))
  def test_log_normalized_step(self, hidden_layers):
    # lr_eff = lr / (Loss * max(1, -log Loss)^(2 - 2/L)) for an L-homogeneous net
    cfg = tiny_config(optimizer="log_normalized_gd", lr=0.3, widths=(16,) * hidden_layers)
    opt, normalized = train.make_optimizer(cfg)
    ds = data.load(jax.random.key(0), cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = train.nets.init(jax.random.key(1), cfg.mlp(8, 1), jnp.float64)
    for scale in (1.0, 30.0):  # loss above and far below 1/e
      p = train.nets.scale_params(params, scale)
      y_fit = jnp.where(train.kkt.margins_of(p, x, y) > 0, y, -y)
      loss = train.loss_fn(p, x, y_fit, "logistic")
      new, _ = train.make_train_step(cfg, opt, normalized)(train.TrainState(p, opt.init(p)), x, y_fit)
      grads = jax.grad(train.loss_fn)(p, x, y_fit, "logistic")
      L = hidden_layers + 1
      lr_eff = 0.3 / (loss * max(1.0, -float(jnp.log(loss))) ** (2 - 2 / L))
      expect = jax.tree_util.tree_map(lambda a, g: a - lr_eff * g, p, grads)
      chex.assert_trees_all_close(new.params, expect, rtol=1e-8)

  @parameterized.parameters((1, 1.0), (1, 30.0), (2, 30.0), (1, 1e-3))
  def test_relative_step_is_scale_free(self, hidden_layers, scale):
    # ||step|| / ||theta|| = lr / max(1, -log Loss), whatever the scale of the weights (issue 11.8)
    cfg = tiny_config(optimizer="relative_gd", lr=0.05, widths=(16,) * hidden_layers)
    opt, normalized = train.make_optimizer(cfg)
    ds = data.load(jax.random.key(0), cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    p = train.nets.scale_params(train.nets.init(jax.random.key(1), cfg.mlp(8, 1), jnp.float64), scale)
    y_fit = jnp.where(train.kkt.margins_of(p, x, y) > 0, y, -y)
    loss = float(train.loss_fn(p, x, y_fit, "logistic"))
    new, _ = train.make_train_step(cfg, opt, normalized)(train.TrainState(p, opt.init(p)), x, y_fit)
    step = train.nets.param_norm(jax.tree_util.tree_map(lambda a, b: a - b, new.params, p))
    self.assertAlmostEqual(float(step / train.nets.param_norm(p)), 0.05 / max(1.0, -np.log(loss)), places=10)
    # and along -grad Loss (finite differences: the loss falls to first order by ||step|| ||grad||)
    grads = jax.grad(train.loss_fn)(p, x, y_fit, "logistic")
    cos = train.nets.tree_dot(jax.tree_util.tree_map(lambda a, b: a - b, new.params, p), grads) / (
        step * train.nets.param_norm(grads))
    self.assertAlmostEqual(float(cos), -1.0, places=10)

  def test_target_loss_far_from_kkt_is_said(self):
    msgs = []
    s = train_job.run(tiny_config(target_loss=0.68, steps=200, log_every=1), self.create_tempdir().full_path, log=msgs.append)
    self.assertEqual(s["stop_reason"], "target_loss")
    self.assertGreater(s["stop_cert_eps_rel"], train.CERT_FAR)
    self.assertTrue(any("not a KKT point" in m for m in msgs), msgs[-3:])

  @parameterized.parameters("adam", "sgd")
  def test_optax_optimizers(self, name):
    s = train_job.run(tiny_config(optimizer=name, lr=0.01 if name == "adam" else 0.5, steps=60),
                  self.create_tempdir().full_path, log=quiet)
    self.assertLess(s["final_loss"], 0.69)

  def test_bad_optimizer_and_dtype(self):
    with self.assertRaisesRegex(ValueError, "unknown optimizer"):
      train.make_optimizer(tiny_config(optimizer="nope"))
    with self.assertRaisesRegex(ValueError, "dtype"):
      train_job.run(tiny_config(dtype="float16"), self.create_tempdir().full_path, log=quiet)

  def test_float32_run(self):
    s = train_job.run(tiny_config(dtype="float32", steps=40), self.create_tempdir().full_path, log=quiet)
    self.assertTrue(np.isfinite(s["eps_rel"]))


if __name__ == "__main__":
  absltest.main()


class StepLRTest(absltest.TestCase):

  def test_step_lr_matches_pytorch_steplr_by_hand(self):
    # PyTorch StepLR(step_size=3, gamma=0.5) with scheduler.step() after every optimizer step: the lr at step t
    # (from 0) is lr * gamma^floor(t / 3). A plain numpy loop with that lr against train's optimizer.
    from jaxrecon import nets  # noqa: PLC0415
    cfg = train.TrainConfig(optimizer="gd", lr=0.3, lr_step_every=3, lr_step_gamma=0.5, dtype="float64")
    net = nets.init(jax.random.key(0), nets.MLPConfig(d_in=4, widths=(5,), init_scales=None), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (6, 4), jnp.float64)
    y = jnp.array([1, -1, 1, -1, 1, -1])
    opt, normalized = train.make_optimizer(cfg)
    self.assertFalse(normalized)
    step = jax.jit(train.make_train_step(cfg, opt, normalized))
    state = train.TrainState(net, opt.init(net))
    manual = net
    grad = jax.grad(lambda p: train.loss_fn(p, x, y, "logistic"))
    for t in range(8):
      state, _ = step(state, x, y)
      lr_t = 0.3 * 0.5 ** (t // 3)
      manual = jax.tree_util.tree_map(lambda p, g, lr_t=lr_t: p - lr_t * g, manual, grad(manual))
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(manual)):
      np.testing.assert_allclose(a, b, rtol=1e-12)
    with self.assertRaisesRegex(ValueError, "StepLR"):
      train.validate(train.TrainConfig(optimizer="relative_gd", lr_step_every=3, lr_step_gamma=0.5))


class WeightDecayAndMuonTest(absltest.TestCase):

  def _net(self):
    from jaxrecon import nets  # noqa: PLC0415
    net = nets.init(jax.random.key(0), nets.MLPConfig(d_in=4, widths=(5,), init_scales=None, first_bias=True),
                    jnp.float64)
    x = jax.random.normal(jax.random.key(1), (6, 4), jnp.float64)
    return net, x, jnp.array([1, -1, 1, -1, 1, -1])

  def test_weight_decay_is_pytorch_sgd_coupled_decay_by_hand(self):
    # torch.optim.SGD(lr, weight_decay=wd): p -= lr (grad + wd p). A plain loop against train's optimizer.
    cfg = train.TrainConfig(optimizer="gd", lr=0.3, weight_decay=0.05, dtype="float64")
    net, x, y = self._net()
    opt, normalized = train.make_optimizer(cfg)
    step = jax.jit(train.make_train_step(cfg, opt, normalized))
    state = train.TrainState(net, opt.init(net))
    manual = net
    grad = jax.grad(lambda p: train.loss_fn(p, x, y, "logistic"))
    for _ in range(5):
      state, _ = step(state, x, y)
      manual = jax.tree_util.tree_map(lambda p, g: p - 0.3 * (g + 0.05 * p), manual, grad(manual))
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(manual)):
      np.testing.assert_allclose(a, b, rtol=1e-12)

  def test_weight_decay_refused_with_loss_normalized_rules(self):
    with self.assertRaisesRegex(ValueError, "weight_decay needs an unnormalized"):
      train.make_optimizer(train.TrainConfig(optimizer="relative_gd", weight_decay=1e-3))
    with self.assertRaisesRegex(ValueError, "normalize"):
      train.make_optimizer(train.TrainConfig(optimizer="adam", normalize=True, weight_decay=1e-3))

  def test_muon_is_optax_muon_and_trains(self):
    from optax import contrib  # noqa: PLC0415
    cfg = train.TrainConfig(optimizer="muon", lr=0.01, dtype="float64")
    net, x, y = self._net()
    opt, normalized = train.make_optimizer(cfg)
    ref = contrib.muon(0.01)
    g = jax.grad(lambda p: train.loss_fn(p, x, y, "logistic"))(net)
    u, _ = opt.update(g, opt.init(net), net, log_loss=jnp.zeros(()))
    u_ref, _ = ref.update(g, ref.init(net), net)
    for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(u_ref)):
      np.testing.assert_allclose(a, b, rtol=1e-10)
    s = train_job.run(tiny_config(optimizer="muon", lr=0.01, steps=60), self.create_tempdir().full_path, log=quiet)
    self.assertLess(s["final_loss"], 0.69)
