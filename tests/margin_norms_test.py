from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize

from jaxrecon import kkt
from jaxrecon import margin_norms as mn
from jaxrecon import nets
from jaxrecon import train

jax.config.update("jax_enable_x64", True)


def trained_net(optimizer, steps=1500, seed=0, n=10, d=5, width=6, log_loss=False):
  """A small first-layer-bias net trained to separate random sphere-ish data with an optax optimizer (on
  log Loss when log_loss: the gradient then never underflows, as `train`'s normalize=True)."""
  objective = train.log_loss_fn if log_loss else train.loss_fn
  x = jax.random.normal(jax.random.key(seed), (n, d), jnp.float64)
  y = jnp.where(jnp.arange(n) % 2 == 0, 1, -1)
  p = nets.init(jax.random.key(seed + 1), nets.MLPConfig(d_in=d, widths=(width,), init_scales=(0.5, 0.5),
                                                         first_bias=True), jnp.float64)

  @jax.jit
  def run(p):
    def step(carry, _):
      p, st = carry
      g = jax.grad(lambda q: objective(q, x, y, "logistic"))(p)
      u, st = optimizer.update(g, st, p)
      return (optax.apply_updates(p, u), st), None
    return jax.lax.scan(step, (p, optimizer.init(p)), None, length=steps)[0][0]
  return run(p), x, y


def flat(tree):
  return np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(tree)])


def jacobian(p, x, y):
  J = jax.jacobian(lambda q: kkt.margins_of(q, x, y))(p)
  return np.concatenate([np.reshape(v, (x.shape[0], -1)) for v in jax.tree_util.tree_leaves(J)], axis=1)


class NormsTest(parameterized.TestCase):

  @parameterized.parameters("l2", "linf", "spectral")
  def test_polar_attains_hoelder_against_numpy(self, norm):
    g = [{"w": np.random.default_rng(0).normal(size=(5, 3)), "b": np.random.default_rng(1).normal(size=3)},
         {"w": np.random.default_rng(2).normal(size=(3, 1))}]
    g = jax.tree_util.tree_map(jnp.asarray, g)
    leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(g)]
    if norm == "l2":
      dual = np.linalg.norm(np.concatenate([v.ravel() for v in leaves]))
    elif norm == "linf":
      dual = sum(np.abs(v).sum() for v in leaves)
    else:  # nuclear norm of each matrix + l1 of each vector
      dual = sum(np.linalg.svd(v, compute_uv=False).sum() if v.ndim == 2 else np.abs(v).sum() for v in leaves)
    np.testing.assert_allclose(mn.dual_norm(g, norm), dual, rtol=1e-10)
    u = mn.polar(g, norm)
    np.testing.assert_allclose(nets.tree_dot(u, g), dual, rtol=1e-10)
    self.assertLessEqual(float(mn.primal_norm(u, norm)), 1 + 1e-10)

  def test_l2_residual_is_kkt_eps_rel(self):
    # kkt's eps_rel comes from an NNLS on the Gram matrix; norm_kkt from a saddle-point solver on VJPs/JVPs.
    p, x, y = trained_net(optax.adam(1e-2))
    eps = float(kkt.report(p, x, y, relaxed=False).eps_rel)
    r = jax.jit(lambda q: mn.norm_kkt(q, x, y, "l2", iters=4000))(p)
    self.assertLessEqual(float(r.eps_lower), eps + 1e-9)
    self.assertGreaterEqual(float(r.eps_upper), eps - 1e-9)
    self.assertLess(float(r.eps_upper) - eps, 5e-3)

  def test_linf_residual_brackets_scipy_linear_program(self):
    # min ||J^T lam||_1 s.t. q . lam = 1, lam >= 0 as an LP (HiGHS): a = L / (||theta||_inf f*).
    p, x, y = trained_net(optax.adam(1e-2))
    J, q = jacobian(p, x, y), np.asarray(kkt.margins_of(p, x, y))
    n, P = J.shape
    c = np.concatenate([np.zeros(n), np.ones(P)])
    a_ub = np.block([[J.T, -np.eye(P)], [-J.T, -np.eye(P)]])
    res = optimize.linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * P), A_eq=np.concatenate([q, np.zeros(P)])[None],
                           b_eq=[1.0], bounds=[(0, None)] * (n + P), method="highs")
    a = 2 / (np.max(np.abs(flat(p))) * res.fun)
    exact = np.sqrt(1 - a * a)
    r = jax.jit(lambda t: mn.norm_kkt(t, x, y, "linf", iters=4000))(p)
    self.assertLessEqual(float(r.eps_lower), exact + 1e-9)
    self.assertGreaterEqual(float(r.eps_upper), exact - 1e-9)
    self.assertLess(float(r.eps_upper - r.eps_lower), 0.02)  # the certified bracket is narrow

  def test_one_point_spectral_residual_by_hand(self):
    # n = 1: lambda is fixed up to scale, so a = L q / (||theta|| ||grad q||_*) exactly (numpy SVDs).
    p, x, y = trained_net(optax.sgd(0.1), steps=200, n=2)
    x, y = x[:1], y[:1]
    J = jacobian(p, x, y)[0]
    leaves = jax.tree_util.tree_leaves(p)
    sizes = np.cumsum([0] + [v.size for v in leaves])
    blocks = [J[a:b].reshape(v.shape) for a, b, v in zip(sizes[:-1], sizes[1:], leaves)]
    def op(v):
      return np.linalg.norm(v, 2) if v.ndim == 2 else np.abs(v).max()
    def nuc(v):
      return np.linalg.svd(v, compute_uv=False).sum() if v.ndim == 2 else np.abs(v).sum()
    q = float(kkt.margins_of(p, x, y)[0])
    self.assertGreater(q, 0)
    a = 2 * q / (max(op(np.asarray(v)) for v in leaves) * sum(nuc(b) for b in blocks))
    r = mn.norm_kkt(p, x, y, "spectral", iters=50)
    np.testing.assert_allclose([r.eps_upper, r.eps_lower], np.sqrt(1 - a * a), rtol=1e-6)

  def test_each_steepest_descent_is_closest_to_its_own_margin(self):
    # the implicit-bias prediction the study measures (Gronich & Vardi 2026), on a net small enough to train
    # far, on log Loss: among GD, Signum and Muon, each optimizer's own norm has the smallest residual.
    opts = {"l2": optax.sgd(0.05), "linf": optax.signum(1e-2), "spectral": optax.contrib.muon(1e-2)}
    nets_ = {k: trained_net(o, steps=2000, log_loss=True) for k, o in opts.items()}
    res = {(k, nm): float(mn.norm_kkt(p, x, y, nm, iters=1000).eps_upper)
           for k, (p, x, y) in nets_.items() for nm in opts}
    for nm in opts:
      others = [res[k, nm] for k in opts if k != nm]
      self.assertLess(res[nm, nm], min(others), res)

  def test_infeasible_net_gives_nan(self):
    p, x, y = trained_net(optax.sgd(0.1), steps=1)
    r = mn.norm_kkt(p, x, -y * 0 + jnp.where(kkt.margins_of(p, x, y) > 0, -y, y), "l2", iters=5)
    self.assertFalse(bool(r.feasible))
    self.assertTrue(np.isnan(float(r.eps_upper)))

  def test_wd_residual_is_the_regularized_gradient(self):
    # ||grad (Loss + wd/2 ||theta||^2)|| / (wd ||theta||), by autodiff of the regularized objective itself.
    p, x, y = trained_net(optax.sgd(0.1), steps=100)
    wd = 0.03
    g = jax.grad(lambda q: train.loss_fn(q, x, y, "logistic") + wd / 2 * nets.param_norm(q) ** 2)(p)
    want = nets.param_norm(g) / (wd * nets.param_norm(p))
    np.testing.assert_allclose(mn.wd_residual(p, x, y, "logistic", wd), want, rtol=1e-10)



class LeakageConfigTest(absltest.TestCase):

  def test_attacks_per_recipe(self):
    from jaxrecon.experiments import leakage  # noqa: PLC0415
    c = leakage.LeakageConfig()
    self.assertEqual([n for n, _ in leakage._attacks(c, False, False)], ["theta", "sign"])
    got = leakage._attacks(c, True, False)
    self.assertEqual([n for n, _ in got], ["theta", "theta_signed", "sign", "sign_signed"])
    self.assertEqual([(rc.attack.target, rc.attack.variant) for _, rc in got],
                     [("theta", "binary"), ("theta", "signed"), ("sign", "binary"), ("sign", "signed")])
    self.assertEqual([n for n, _ in leakage._attacks(c, True, True)], ["theta", "sign"])  # multiclass: no signed
    with self.assertRaisesRegex(ValueError, "unknown recipes"):
      leakage.LeakageConfig(recipes=("gd", "lion"))


if __name__ == "__main__":
  absltest.main()
