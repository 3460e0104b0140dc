import os
from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import _muon

from jaxrecon.optim import sumo


def grads(seed, shape, steps):
  keys = jax.random.split(jax.random.key(seed), steps)
  return [jax.random.normal(k, shape, jnp.float64) for k in keys]


def polar(a):
  u, _, vt = np.linalg.svd(np.asarray(a), full_matrices=False)
  return u @ vt


class MuonEquivalenceTest(parameterized.TestCase):

  def run_sumo(self, gs, transport):
    opt = sumo.scale_by_sumo(rank=gs[0].shape[1], momentum=0.9, refresh_every=1, growth_limit=None,
                             projector="exact", shape_scale=None, transport_moment=transport)
    state = opt.init({"w": gs[0]})
    out = []
    for g in gs:
      u, state = opt.update({"w": g}, state)
      out.append(np.asarray(u["w"]))
    return out

  def test_square_full_rank_equals_exact_muon_with_sum_momentum(self):
    gs = grads(0, (6, 6), 6)
    b = np.zeros((6, 6))
    for got, g in zip(self.run_sumo(gs, transport=True), gs):
      b = 0.9 * b + np.asarray(g)
      np.testing.assert_allclose(got, polar(b), atol=1e-10)

  def test_without_transport_it_differs(self):
    gs = grads(0, (6, 6), 6)
    b = np.zeros((6, 6))
    errs = []
    for got, g in zip(self.run_sumo(gs, transport=False), gs):
      b = 0.9 * b + np.asarray(g)
      errs.append(np.max(np.abs(got - polar(b))))
    self.assertLess(errs[0], 1e-10)  # step 0: the moment is zero either way
    self.assertGreater(max(errs[1:]), 0.1)


class OrthogonalizationTest(parameterized.TestCase):

  def test_orthonormal_rows(self):
    m = jax.random.normal(jax.random.key(1), (4, 9), jnp.float64)
    o = sumo.orthogonalize(m)
    np.testing.assert_allclose(o @ o.T, np.eye(4), atol=1e-12)

  def test_rank_deficient_moment_adds_no_directions(self):
    u = jax.random.normal(jax.random.key(2), (4, 1), jnp.float64)
    v = jax.random.normal(jax.random.key(3), (1, 9), jnp.float64)
    o = np.asarray(sumo.orthogonalize(u @ v))
    want = (u / jnp.linalg.norm(u)) @ (v / jnp.linalg.norm(v))
    np.testing.assert_allclose(o, want, atol=1e-12)
    self.assertEqual(np.linalg.matrix_rank(o, tol=1e-8), 1)

  @parameterized.parameters(1.0, 1e2, 1e4, 1e6)
  def test_exact_svd_accurate_at_every_condition_number_newton_schulz_not(self, cond):
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    v, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    s = np.geomspace(1.0, 1.0 / cond, 32)
    a = jnp.asarray((u * s) @ v.T, jnp.float32)
    target = u @ v.T
    o = np.asarray(sumo.orthogonalize(a, rank_tol=0.0), np.float64)
    ns = np.asarray(_muon.orthogonalize_via_newton_schulz(a, jnp.asarray(_muon._DEFAULT_NS_COEFFS), 5),
                    np.float64)
    orth = lambda x: float(np.max(np.abs(x @ x.T - np.eye(32))))
    self.assertLess(orth(o), 2e-5)  # float32: about 1e-6 whatever the conditioning
    if cond <= 1e4:  # beyond, the polar factor itself is ill-conditioned in float32 (6e-4 at 1e6)
      self.assertLess(float(np.max(np.abs(o - target))), 2e-5)
    if cond >= 1e3:  # Newton-Schulz cannot lift singular values below ~1e-3 in 5 steps
      self.assertGreater(orth(ns), 0.25)
      self.assertGreater(float(np.max(np.abs(ns - target))), 0.25)


class NewtonSchulzTest(parameterized.TestCase):

  @parameterized.parameters((8, 20), (20, 8), (3, 3))
  def test_equals_optax_muon_iteration(self, r, n):
    # our in-subspace Newton-Schulz against optax.contrib.muon's own (a separate implementation)
    a = jax.random.normal(jax.random.key(r * n), (r, n), jnp.float32)
    want = _muon.orthogonalize_via_newton_schulz(a, jnp.asarray(_muon._DEFAULT_NS_COEFFS), 5)
    np.testing.assert_allclose(sumo.newton_schulz(a), want, rtol=2e-4, atol=2e-5)
    batch = jnp.stack([a, 2 * a])  # batched, and scale-free (the Frobenius normalization)
    np.testing.assert_allclose(sumo.newton_schulz(batch)[1], want, rtol=2e-4, atol=2e-5)

  def test_condition_numbers_from_known_singular_values(self):
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(9, 4)))
    m = (u * np.array([5.0, 2.0, 1.0, 0.05])) @ v.T
    np.testing.assert_allclose(sumo.condition_numbers(jnp.asarray(m)), 100.0, rtol=1e-10)

  def test_sumo_with_newton_schulz_is_muon_with_newton_schulz_at_full_rank(self):
    # square W, r = n, K = 1, exact projector: the in-subspace step is Muon's (sum momentum, NS polar factor)
    w = jax.random.normal(jax.random.key(0), (6, 6), jnp.float32)
    opt = sumo.scale_by_sumo(rank=6, refresh_every=1, projector="exact", growth_limit=None, shape_scale=None,
                             residual=False, orthogonalizer="newton_schulz", momentum=0.9)
    state = opt.init(w)
    buf = jnp.zeros_like(w)
    for k in range(3):
      g = jnp.sin(w * (k + 1))
      u, state = opt.update(g, state)
      buf = 0.9 * buf + g
      np.testing.assert_allclose(u, _muon.orthogonalize_via_newton_schulz(buf, jnp.asarray(
          _muon._DEFAULT_NS_COEFFS), 5), rtol=2e-3, atol=2e-4)
    with self.assertRaisesRegex(ValueError, "orthogonalizer"):
      sumo.scale_by_sumo(orthogonalizer="polar")


class TransportTest(absltest.TestCase):

  def test_identities(self):
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(4), (8, 3), jnp.float64))
    m = jax.random.normal(jax.random.key(5), (3, 5), jnp.float64)
    np.testing.assert_allclose(sumo.transport(q, q, m), m, atol=1e-12)
    perm = jnp.array([2, 0, 1])
    np.testing.assert_allclose(sumo.transport(q, q[:, perm], m), m[perm], atol=1e-12)


class StateAndJitTest(absltest.TestCase):

  def test_state_size_is_m_plus_n_times_r(self):
    params = {"w": jnp.zeros((50, 20)), "v": jnp.zeros((7, 30)), "b": jnp.zeros(5)}
    opt = sumo.scale_by_sumo(rank=4, key=jax.random.key(0))
    state = opt.init({"w": params["w"], "v": params["v"]})
    size = lambda t: sum(x.size for x in jax.tree_util.tree_leaves(t))
    self.assertEqual(size(state.basis) + size(state.moment), (50 + 20) * 4 + (30 + 7) * 4)
    self.assertEqual(size(state.prev_norm), 2)

  def test_jit_with_schedule_deterministic_exact_projector(self):
    params = {"w": jax.random.normal(jax.random.key(6), (12, 8), jnp.float64), "b": jnp.zeros(8)}
    sched = optax.linear_schedule(0.1, 0.01, 10)

    def loss(p, x):
      return jnp.sum(jnp.square(jnp.tanh(x @ p["w"] + p["b"][None, :]) - 0.3))

    def train(seed):
      opt = sumo.sumo(sched, rank=3, refresh_every=4, projector="exact", key=jax.random.key(seed))
      state = opt.init(params)

      @jax.jit
      def step(p, s, x):
        g = jax.grad(loss)(p, x)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss(p, x)
      p, losses = params, []
      for i in range(12):
        x = jax.random.normal(jax.random.key(100 + i), (16, 12), jnp.float64)
        p, state, l = step(p, state, x)
        losses.append(float(l))
      return p, losses
    p1, l1 = train(0)
    p2, l2 = train(1)  # the key only feeds the randomized projector
    np.testing.assert_array_equal(np.asarray(p1["w"]), np.asarray(p2["w"]))
    self.assertLess(np.mean(l1[-3:]), np.mean(l1[:3]))

  def test_randomized_projector_spans_top_subspace(self):
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    v, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    s = np.concatenate([[10, 8, 6], np.full(17, 1e-3)])
    g = jnp.asarray((u[:, :20] * s) @ v.T)
    q = sumo.randomized_projector(jax.random.key(0), g, 3)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-10)
    # the projector onto span(q) equals the one onto the top-3 left singular vectors
    np.testing.assert_allclose(q @ q.T, u[:, :3] @ u[:, :3].T, atol=1e-6)

  def test_routing_and_nd_parameters(self):
    params = {"conv": jnp.ones((3, 3, 4, 5)), "w": jnp.ones((6, 4)), "b": jnp.zeros(4)}
    opt = sumo.sumo(0.01, rank=2, key=jax.random.key(1), weight_dimension_numbers=lambda p: sumo.DimensionNumbers(
        (0, 1, 2), 3) if p.ndim == 4 else sumo.DimensionNumbers())
    state = opt.init(params)
    inner = state.inner_states["sumo"].inner_state[0]
    self.assertEqual(inner.basis["conv"].shape, (1, 36, 2))  # (3*3*4) x 5 as one matrix
    self.assertIsInstance(inner.basis["b"], optax.MaskedNode)
    u, _ = opt.update(jax.tree_util.tree_map(jnp.ones_like, params), state, params)
    self.assertEqual(u["conv"].shape, (3, 3, 4, 5))


class KeyTest(absltest.TestCase):

  def test_randomized_projector_needs_a_key(self):
    with self.assertRaisesRegex(ValueError, "PRNG key"):
      sumo.scale_by_sumo(rank=2).init({"w": jnp.ones((5, 4))})
    sumo.scale_by_sumo(rank=2, projector="exact").init({"w": jnp.ones((5, 4))})  # deterministic: no key

  def test_state_round_trips_through_numpy_and_resumes_identically(self):
    # the state is a tree of plain arrays: written to .npz and read back, the run continues bit-identically
    from jaxrecon import workdir as wd
    params = {"w": jax.random.normal(jax.random.key(2), (9, 6), jnp.float64)}
    opt = sumo.scale_by_sumo(rank=2, refresh_every=2, key=jax.random.key(3))
    grads = [jax.tree_util.tree_map(lambda p, i=i: jnp.sin(p * (i + 1)), params) for i in range(6)]
    state = opt.init(params)
    for g in grads[:3]:
      _, state = opt.update(g, state)
    d = self.create_tempdir().full_path
    path = os.path.join(d, "s.npz")
    wd.write_npz(path, **wd.flatten_tree(state, "opt"))
    restored = wd.unflatten_tree(opt.init(params), wd.read_npz(path), "opt")
    a, b = state, restored
    for g in grads[3:]:
      ua, a = opt.update(g, a)
      ub, b = opt.update(g, b)
      np.testing.assert_array_equal(np.asarray(ua["w"]), np.asarray(ub["w"]))
    # typed and raw keys give the same stream; another key another projector
    raw = sumo.scale_by_sumo(rank=2, refresh_every=2, key=jax.random.key_data(jax.random.key(3)))
    other = sumo.scale_by_sumo(rank=2, refresh_every=2, key=jax.random.key(4))
    u1, _ = opt.update(grads[0], opt.init(params))
    u2, _ = raw.update(grads[0], raw.init(params))
    u3, _ = other.update(grads[0], other.init(params))
    np.testing.assert_array_equal(np.asarray(u1["w"]), np.asarray(u2["w"]))
    self.assertGreater(float(jnp.max(jnp.abs(u1["w"] - u3["w"]))), 0.0)


if __name__ == "__main__":
  absltest.main()


class IntegrationTest(absltest.TestCase):

  def test_training_and_attack_take_sumo(self):
    from jaxrecon import attack
    from jaxrecon import data as data_lib
    from jaxrecon import nets
    from jaxrecon import train
    cfg = train.TrainConfig(data=data_lib.DataConfig(n=16, d=8, n_test=4), widths=(12,), init_scales=(0.3,),
                            optimizer="sumo", lr=0.02, steps=60)
    opt, normalized = train.make_optimizer(cfg)
    self.assertFalse(normalized)
    ds = data_lib.load(jax.random.key(0), cfg.data)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = nets.init(jax.random.key(1), cfg.mlp(8, 1), jnp.float64)
    state = train.TrainState(params, opt.init(params))
    step = jax.jit(train.make_train_step(cfg, opt, normalized))
    first = None
    for _ in range(60):
      state, log_loss = step(state, x, y)
      first = float(log_loss) if first is None else first
    self.assertLess(float(log_loss), first)
    acfg = attack.AttackConfig(m=6, steps=5, log_every=5, dtype="float64", optimizer="sumo")
    hyper = attack.random_sweep(jax.random.key(2), 2, {"lr_x": (1e-3, 1e-2)})
    res = attack.run_sweep(jax.random.key(3), state.params, hyper, 8, acfg, log=None)
    self.assertEqual(res.x.shape, (2, 6, 8))
    self.assertTrue(np.isfinite(res.loss).all())
