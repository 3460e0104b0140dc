"""KKT diagnostics of the max-margin problem (P): min 1/2 ||theta||^2 s.t. q_i(theta) >= 1.

For an L-homogeneous net, theta is normalized to the problem's scale, theta_tilde = theta / q_min^(1/L)
(so q_min = 1), and compared with the KKT conditions:
  stationarity  r = theta_tilde - sum_i lambda_i grad q_i(theta_tilde),   eps_rel = ||r|| / ||theta_tilde||
  slackness     delta = max_i lambda_i (q_i - 1)
with the best multipliers lambda >= 0 from a non-negative least squares. sum_i c_i grad q_i is ONE
vector-Jacobian product; the NNLS needs only the n x n Gram matrix of the per-example gradients, built from a
few matrix products (no per-example Jacobian), and J theta = L q (Euler's identity).

ReLU kinks: where w_j . x_i = 0 the Clarke subdifferential lets relu' be anything in [0, 1]. The
Clarke-aware residual gives each first-layer pair within `kink_tol` (relative to the largest first-layer
pre-activation) its own multiplier mu_ij in [0, lambda_i], solved jointly with lambda (a convex QP). For
deeper layers only the number of such pairs is reported: their freedom is not jointly convex.

All functions are pure and act on one training set; vmap them over sets or checkpoints at the boundary.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrecon import losses
from jaxrecon import nets
from jaxrecon import nnls


class KKTReport(NamedTuple):
  """KKT residuals of one network on one labelled set. Per-sample arrays are (N,)."""
  q_min: jax.Array              # smallest margin of the raw network
  normalized_margin: jax.Array  # q_min / ||theta||^L
  theta_norm: jax.Array         # ||theta|| of the raw network
  feasible: jax.Array           # q_min > 0 (otherwise the residuals use a stand-in scale)
  eps_rel: jax.Array            # ||r|| / ||theta_tilde|| with relu'(0) = 0 and the best lambda
  delta: jax.Array              # max_i lambda_i (q_tilde_i - 1)
  lam: jax.Array                # (N,) best multipliers at the normalized scale
  slack: jax.Array              # (N,) q_tilde_i - 1
  support: jax.Array            # (N,) lambda_i > 0
  nnls_converged: jax.Array
  eps_rel_clarke: jax.Array     # the same with first-layer kink pairs free in [0, lambda_i]
  delta_clarke: jax.Array
  lam_clarke: jax.Array         # (N,)
  kink_pairs: jax.Array         # number of first-layer (point, neuron) pairs within kink_tol
  kink_pairs_deep: jax.Array    # the same for deeper hidden layers (not freed)
  kink_tol: jax.Array
  cert_eps_rel: jax.Array       # upper bound on eps_rel from lambda ~ -l'(q): sin angle(theta, -grad Loss)
  cert_eps_abs: jax.Array       # sqrt(2 (1 - beta)) / gamma_bar^(1/L), beta = cos angle(theta, -grad Loss)


def margins_of(params, x, y) -> jax.Array:
  return losses.margins(nets.apply(params, x), y)


def normalize(params, x, y):
  """theta / q_min^(1/L) and q_min; when q_min <= 0 the mean |q| stands in for the scale."""
  q = margins_of(params, x, y)
  q_min = jnp.min(q)
  scale = jnp.where(q_min > 0, q_min, jnp.mean(jnp.abs(q)))
  scale = jnp.maximum(scale, jnp.finfo(q.dtype).tiny)
  return nets.scale_params(params, scale ** (-1.0 / nets.degree(params))), q_min


def weighted_gradient(params, x, y, lam):
  """sum_i lam_i grad_theta q_i(theta): one vector-Jacobian product."""
  _, vjp = jax.vjp(lambda p: margins_of(p, x, y), params)
  return vjp(lam.astype(x.dtype))[0]


def stationarity_residual(params, x, y, lam):
  """r = theta - sum_i lam_i grad_theta q_i(theta) (a params-shaped pytree)."""
  g = weighted_gradient(params, x, y, lam)
  return jax.tree_util.tree_map(lambda p, u: p - u, params, g)


def tree_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in jax.tree_util.tree_leaves(tree)))


class _Signals(NamedTuple):
  acts: list     # inputs a_0 = x, a_1, ..., a_{L-1} of each layer, (N, fan_in)
  deltas: list   # d q_i / d z_l for l = 1..L, (N, fan_out)
  back1: jax.Array  # d q_i / d a_1 (before relu'), (N, width_1)
  zs: list       # pre-activations z_1..z_L


def per_example_signals(params, x, y) -> _Signals:
  """Forward activations and per-example backprop signals of q_i, all batched matrix products."""
  zs = nets.preactivations(params, x)
  acts = [x] + [jax.nn.relu(z) for z in zs[:-1]]
  out = zs[-1][..., 0] if zs[-1].shape[-1] == 1 else zs[-1]
  delta = losses.margin_cotangent(out, y)  # (N, K)
  deltas = [delta]
  back1 = None
  for l in range(len(params) - 1, 0, -1):
    back = deltas[0] @ params[l]["w"].T
    if l == 1:
      back1 = back
    deltas.insert(0, back * (zs[l - 1] > 0).astype(x.dtype))
  return _Signals(acts, deltas, back1, zs)


def gram(params, x, y) -> jax.Array:
  """G_ij = <grad q_i, grad q_j> = sum_l (a_{l-1,i} . a_{l-1,j}) (delta_{l,i} . delta_{l,j})."""
  sig = per_example_signals(params, x, y)
  G = 0.0
  for l, (a, d) in enumerate(zip(sig.acts, sig.deltas)):
    aa = a @ a.T
    if l == 0 and "b" in params[0]:
      aa = aa + 1.0
    G = G + aa * (d @ d.T)
  return G


def best_multipliers(params, x, y, **nnls_kwargs) -> nnls.NNLSResult:
  """argmin_{lam >= 0} ||theta - sum_i lam_i grad q_i||, via the Gram matrix and J theta = L q."""
  G = gram(params, x, y)
  b = nets.degree(params) * margins_of(params, x, y)
  return nnls.nnls_gram(G, b, **nnls_kwargs)


def kink_mask(params, x, kink_tol: float):
  """(N, width_1) pairs with |z_1| <= kink_tol * max |z_1|, and the count of such pairs deeper in."""
  zs = nets.preactivations(params, x)
  def near(z):
    return jnp.abs(z) <= kink_tol * jnp.max(jnp.abs(z))
  deep = sum(jnp.sum(near(z)) for z in zs[1:-1]) if len(zs) > 2 else jnp.zeros((), jnp.int32)
  return near(zs[0]), deep


def _project_clarke(lam_t, mu_t, mask):
  """Euclidean projection onto {lam >= 0, 0 <= mu_ij <= lam_i on mask}, row by row (bisection on lam_i)."""
  c = jnp.where(mask, mu_t, -jnp.inf)
  def h(l):  # derivative of the row objective in lam_i (up to 2): increasing in l
    return l - lam_t - jnp.sum(jnp.where(mask, jnp.maximum(c - l[:, None], 0.0), 0.0), axis=1)
  hi = jnp.maximum(jnp.maximum(lam_t, jnp.max(c, axis=1)), 0.0)
  lo = jnp.zeros_like(lam_t)
  def body(_, lohi):
    lo, hi = lohi
    mid = 0.5 * (lo + hi)
    up = h(mid) > 0
    return jnp.where(up, lo, mid), jnp.where(up, mid, hi)
  lo, hi = lax.fori_loop(0, 64, body, (lo, hi))
  lam = jnp.where(h(jnp.zeros_like(lam_t)) >= 0, 0.0, 0.5 * (lo + hi))
  mu = jnp.where(mask, jnp.clip(mu_t, 0.0, lam[:, None]), 0.0)
  return lam, mu


def clarke_multipliers(params, x, y, lam0, mask, iters: int = 200):
  """min ||theta - A(lam, mu)|| over lam >= 0, 0 <= mu <= lam on the kink pairs (FISTA from (lam0, 0)).

  A(lam, mu) = J^T lam + E(mu - lam * relu'(z_1)) where E(M) puts sum_i M_ij back1_ij x_i into column j of
  W_1 (and sum_i M_ij back1_ij into b_1): on a kink pair the derivative relu'(z_ij) is replaced by
  mu_ij / lam_i in [0, 1]. Returns the best (lam, mu) seen, which is never worse than (lam0, 0).
  """
  sig = per_example_signals(params, x, y)
  B = sig.back1
  d_kink = jnp.where(mask, (sig.zs[0] > 0).astype(x.dtype), 0.0)
  has_bias = "b" in params[0]

  def forward(lam, mu):
    g = weighted_gradient(params, x, y, lam)
    m = (mu - lam[:, None] * d_kink) * B
    g0 = dict(g[0])
    g0["w"] = g0["w"] + x.T @ m
    if has_bias:
      g0["b"] = g0["b"] + jnp.sum(m, axis=0)
    return (g0,) + tuple(g[1:])

  def adjoint(r):
    _, jr = jax.jvp(lambda p: margins_of(p, x, y), (params,), (r,))
    e = x @ r[0]["w"]
    if has_bias:
      e = e + r[0]["b"]
    e = e * B
    return jr - jnp.sum(d_kink * e, axis=1), jnp.where(mask, e, 0.0)

  def residual(lam, mu):
    return jax.tree_util.tree_map(lambda p, u: p - u, params, forward(lam, mu))

  # Lipschitz constant of the gradient: ||A||^2 by power iteration.
  def pw(_, v):
    lam, mu = adjoint(forward(*v))
    nrm = jnp.sqrt(jnp.sum(lam ** 2) + jnp.sum(mu ** 2))
    nrm = jnp.maximum(nrm, jnp.finfo(x.dtype).tiny)
    return lam / nrm, mu / nrm
  v0 = (jnp.ones_like(lam0), jnp.where(mask, 1.0, 0.0).astype(x.dtype))
  v = lax.fori_loop(0, 20, pw, v0)
  lam_v, mu_v = adjoint(forward(*v))
  lip = 1.05 * jnp.sqrt(jnp.sum(lam_v ** 2) + jnp.sum(mu_v ** 2))

  def objective(lam, mu):
    return tree_norm(residual(lam, mu))

  mu0 = jnp.zeros(mask.shape, x.dtype)
  f0 = objective(lam0, mu0)
  def body(_, state):
    lam, mu, zl, zm, t, best = state
    gl, gm = adjoint(residual(zl, zm))
    lam_n, mu_n = _project_clarke(zl + gl / lip, zm + gm / lip, mask)
    f_n = objective(lam_n, mu_n)
    t_n = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
    mom = (t - 1) / t_n
    zl_n, zm_n = lam_n + mom * (lam_n - lam), mu_n + mom * (mu_n - mu)
    better = f_n < best[2]
    best = (jnp.where(better, lam_n, best[0]), jnp.where(better, mu_n, best[1]),
            jnp.minimum(f_n, best[2]))
    return lam_n, mu_n, zl_n, zm_n, t_n, best
  state = (lam0, mu0, lam0, mu0, jnp.ones((), x.dtype), (lam0, mu0, f0))
  best = lax.fori_loop(0, iters, body, state)[-1]
  return best[0], best[1], best[2]


def certificate(params, x, y, loss: str = "logistic"):
  """(cert_eps_rel, cert_eps_abs) from the loss gradient alone (cheap: one VJP).

  -grad Loss = (1/n) sum_i -l'(q_i) grad q_i is a non-negative combination of the grad q_i, so with
  beta = cos(theta, -grad Loss) the best multipliers satisfy eps_rel <= sqrt(1 - beta^2); in absolute units
  at the normalized scale the chord bound is sqrt(2 (1 - beta)) / gamma_bar^(1/L).
  """
  q = margins_of(params, x, y)
  w = losses.loss_derivative(loss, q)
  u = weighted_gradient(params, x, y, w)
  theta_norm = tree_norm(params)
  beta = nets.tree_dot(params, u) / jnp.maximum(theta_norm * tree_norm(u), jnp.finfo(x.dtype).tiny)
  beta = jnp.clip(beta, -1.0, 1.0)
  eps_rel = jnp.where(beta > 0, jnp.sqrt(jnp.maximum(1 - beta ** 2, 0.0)), 1.0)
  gamma = jnp.min(q) / theta_norm ** nets.degree(params)
  eps_abs = jnp.sqrt(2 * jnp.maximum(1 - beta, 0.0)) / jnp.where(
      gamma > 0, gamma ** (1.0 / nets.degree(params)), jnp.nan)
  return eps_rel, eps_abs


def kkt_report(params, x, y, *, kink_tol: float = 1e-6, clarke_iters: int = 200,
               loss: str = "logistic") -> KKTReport:
  """All KKT diagnostics of one network on one set (x (N, D), y (N,)). Pure; jit/vmap at the caller."""
  L = nets.degree(params)
  q_raw = margins_of(params, x, y)
  theta_norm = tree_norm(params)
  tparams, q_min = normalize(params, x, y)
  q = margins_of(tparams, x, y)
  theta_t_norm = tree_norm(tparams)

  fit = best_multipliers(tparams, x, y)
  lam = fit.x
  r = stationarity_residual(tparams, x, y, lam)
  eps_rel = tree_norm(r) / theta_t_norm
  slack = q - 1.0
  delta = jnp.max(lam * slack)

  mask, deep = kink_mask(tparams, x, kink_tol)
  if clarke_iters > 0:
    lam_c, _, res_c = clarke_multipliers(tparams, x, y, lam, mask, clarke_iters)
    eps_c = jnp.minimum(res_c / theta_t_norm, eps_rel)
  else:
    lam_c, eps_c = lam, eps_rel
  cert_rel, cert_abs = certificate(params, x, y, loss)
  return KKTReport(
      q_min=q_min, normalized_margin=jnp.min(q_raw) / theta_norm ** L, theta_norm=theta_norm,
      feasible=q_min > 0, eps_rel=eps_rel, delta=delta, lam=lam, slack=slack, support=lam > 0,
      nnls_converged=fit.converged, eps_rel_clarke=eps_c, delta_clarke=jnp.max(lam_c * slack),
      lam_clarke=lam_c, kink_pairs=jnp.sum(mask), kink_pairs_deep=deep,
      kink_tol=jnp.asarray(kink_tol, x.dtype), cert_eps_rel=cert_rel, cert_eps_abs=cert_abs)


def summarize(report: KKTReport) -> dict:
  """The scalar entries of a (non-batched) report as Python numbers."""
  out = {}
  for k, v in report._asdict().items():
    if jnp.ndim(v) == 0:
      out[k] = v.item()
  out["support_size"] = int(jnp.sum(report.support))
  return out
