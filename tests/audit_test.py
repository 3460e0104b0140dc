"""The notebook API on a model jaxrecon did not train, and against the attack job on the same weights."""

import os

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import metric_writers_test

from jaxrecon import audit
from jaxrecon import data as data_lib
from jaxrecon import models
from jaxrecon import train
from jaxrecon import workdir as wd
from jaxrecon.attack import AttackConfig, SweepConfig
from jaxrecon.experiments import attack as attack_job
from jaxrecon.experiments import train as train_job

SMALL_ATTACK = AttackConfig(steps=20, log_every=10, m=12)
SMALL_SWEEP = SweepConfig(configs=2, lr_x=(1e-3, 1e-2))


class _Mlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = jax.nn.relu(nn.Dense(24)(x))  # a first-layer bias: still covered
    return nn.Dense(1, use_bias=False)(h)[:, 0]


class AuditTest(absltest.TestCase):

  def test_a_flax_model_trained_with_adam_end_to_end(self):
    x, y = data_lib.sphere(jax.random.key(0), 10, 6)
    model = _Mlp()
    variables = model.init(jax.random.key(1), x)
    opt = optax.adam(1e-2)
    state = opt.init(variables)

    @jax.jit
    def step(v, s):
      g = jax.grad(lambda v: jnp.mean(jax.nn.softplus(-y * model.apply(v, x))))(v)
      u, s = opt.update(g, s)
      return optax.apply_updates(v, u), s
    for _ in range(300):
      variables, state = step(variables, state)
    params = models.from_flax(variables)
    rec = audit.reconstruct(jax.random.key(0), params, n_train=10, attack=SMALL_ATTACK, sweep=SMALL_SWEEP)
    self.assertEqual(rec.candidates.shape[1], 6)
    self.assertEqual(rec.candidates.shape[0], rec.margin_score.shape[0])
    nums = audit.evaluate_vectors(rec, x)
    self.assertTrue(np.isfinite(nums.mean_best5_dist))
    res = audit.kkt_residuals(params, x, y)
    self.assertTrue(0.0 <= res["eps_rel"] < 2.0 and res["support_size"] >= 1)
    self.assertEqual(audit.membership_scores(params, x, 1.0).shape, (10,))
    with self.assertRaisesRegex(ValueError, "give n_train"):
      audit.reconstruct(jax.random.key(0), params)

  def test_the_same_numbers_as_the_attack_job(self):
    d = self.create_tempdir().full_path
    cfg = train.TrainConfig(data=data_lib.DataConfig(n=10, d=8, n_test=10), widths=(16,), init_scales=(0.3,),
                            steps=100, log_every=0, relaxed=False)
    train_writer, attack_writer = metric_writers_test.Recorder(), metric_writers_test.Recorder()
    train_job.run(cfg, os.path.join(d, "t"), log=lambda _: None, writer=train_writer)
    rc = attack_job.ReconstructConfig(attack=SMALL_ATTACK, sweep=SMALL_SWEEP, figure_pairs=0)
    out = attack_job.run(rc, os.path.join(d, "t"), os.path.join(d, "a"), log=lambda _: None, writer=attack_writer)
    # a metric writer passed to the jobs gets every metrics.jsonl row's numbers, at the row's step
    rows = wd.read_jsonl(os.path.join(d, "t", "metrics.jsonl"))
    self.assertEqual([(r["step"], r["loss"], r["q_min"]) for r in rows],
                     [(s, v["train/loss"], v["train/q_min"]) for s, v in train_writer.calls])
    rows = wd.read_jsonl(os.path.join(d, "a", "metrics.jsonl"))
    self.assertLen(attack_writer.calls, len(rows))
    for r, (s, v) in zip(rows, attack_writer.calls):
      self.assertEqual((r["step"], r["loss"]), (s, v[f"attack/config_{r['config']}/loss"]))
    _, ds, ckpts = train_job.load_run(os.path.join(d, "t"))
    rec = audit.reconstruct(jax.random.key(SMALL_SWEEP.seed), ckpts[-1][1], n_train=10, attack=SMALL_ATTACK,
                            sweep=SMALL_SWEEP, theta_norm=0.0)
    saved = wd.read_npz(os.path.join(d, "a", "candidates.npz"))
    np.testing.assert_array_equal(rec.sweep.x, saved["x"])
    nums = audit.evaluate_vectors(rec, ds.x_train)
    self.assertEqual(nums.n_close, out.vectors.n_close)
    self.assertEqual(nums.mean_best5_dist, out.vectors.mean_best5_dist)
    # the recovery measure from the notebook equals the attack job's (same pool, same halves, same key)
    rep = audit.recovery(jax.random.key(0), rec, ds.x_train, ds.x_test)
    job = out.summary["credit"]
    self.assertEqual(rep["attack"]["n_credited"], job["attack"]["n_credited"])
    self.assertEqual({k: v["n_credited"] for k, v in rep["nulls"].items()},
                     {k: v["n_credited"] for k, v in job["nulls"].items()})
    self.assertEqual(rep["per_unit"]["n_units"], job["per_unit"]["n_units"])



class LabelsTest(absltest.TestCase):

  def test_zero_one_labels_are_read_as_plus_minus_one_and_said(self):
    import warnings  # noqa: PLC0415
    params = ({"w": np.ones((3, 2))}, {"w": np.ones((2, 1))})
    said = []
    np.testing.assert_array_equal(audit.binary_labels(params, [0, 1, 1, 0], log=said.append), [-1, 1, 1, -1])
    self.assertLen(said, 1)
    self.assertIn("{0, 1} read as {-1, +1}", said[0])
    with warnings.catch_warnings(record=True) as w:
      warnings.simplefilter("always")
      audit.binary_labels(params, np.array([0.0, 1.0]))
    self.assertLen(w, 1)
    np.testing.assert_array_equal(audit.binary_labels(params, [-1, 1]), [-1, 1])  # unchanged, silent
    with self.assertRaisesRegex(ValueError, "must be -1 / \\+1"):
      audit.binary_labels(params, [0, 1, 2])
    multi = ({"w": np.ones((3, 2))}, {"w": np.ones((2, 3))})
    np.testing.assert_array_equal(audit.binary_labels(multi, [0, 1, 2]), [0, 1, 2])  # class indices


if __name__ == "__main__":
  absltest.main()
