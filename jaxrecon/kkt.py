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
pre-activation; default 1e-3, i.e. a Goldstein-style neighbourhood of the kink, since gradient descent
chatters across it) its own multiplier mu_ij in [0, lambda_i], solved jointly with lambda (a convex QP).
For deeper layers only the number of such pairs is reported: their freedom is not jointly convex.

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
  exact_kink_pairs: jax.Array   # of those, pairs within 1e-6 (at the kink up to rounding)
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
  return nets.param_norm(tree)


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
  d1 = (sig.zs[0] > 0).astype(x.dtype)  # relu' with relu'(0) = 0, as in the VJP
  return _gram_from(sig, d1, "b" in params[0])[0]


def best_multipliers(params, x, y, slack_weight: float = 1e-6, **nnls_kwargs) -> nnls.NNLSResult:
  """argmin_{lam >= 0} 1/2 ||theta - sum_i lam_i grad q_i||^2 + rho sum_i lam_i (q_i / q_min - 1).

  Via the Gram matrix and J theta = L q. The small slackness term (rho = slack_weight * mean(L q)) only
  decides between multipliers that fit stationarity equally well (a singular Gram, e.g. points in a low
  dimensional subspace): it prefers those on the margin, so delta is not inflated by an arbitrary choice.
  """
  G = gram(params, x, y)
  q = margins_of(params, x, y)
  return nnls.nnls_gram(G, _prefer_margin(nets.degree(params) * q, q, slack_weight), **nnls_kwargs)


def _prefer_margin(b, q, slack_weight: float):
  """The NNLS linear term with the small penalty rho * sum_i lam_i (q_i / q_min - 1) folded in."""
  slack = q / jnp.min(q) - 1.0
  return b - slack_weight * jnp.mean(jnp.abs(b)) * jnp.where(jnp.min(q) > 0, slack, 0.0)


def kink_mask(params, x, kink_tol: float):
  """(N, width_1) pairs with |z_1| <= kink_tol * max |z_1|, and the count of such pairs deeper in."""
  zs = nets.preactivations(params, x)
  def near(z):
    return jnp.abs(z) <= kink_tol * jnp.max(jnp.abs(z))
  deep = sum(jnp.sum(near(z)) for z in zs[1:-1]) if len(zs) > 2 else jnp.zeros((), jnp.int32)
  return near(zs[0]), deep


def _gram_from(sig: _Signals, d1: jax.Array, has_bias: bool):
  """Gram matrix and b = J theta with the first-layer derivative matrix d1 (N, width_1) in place of relu'."""
  deltas = [sig.back1 * d1] + list(sig.deltas[1:]) if sig.back1 is not None else sig.deltas
  G = 0.0
  b = 0.0
  for l, (a, d, z) in enumerate(zip(sig.acts, deltas, sig.zs)):
    aa = a @ a.T
    if l == 0 and has_bias:
      aa = aa + 1.0
    G = G + aa * (d @ d.T)
    b = b + jnp.sum(d * z, axis=1)  # <grad_W_l q_i, W_l> (+ bias) = delta_l . z_l
  return G, b


def clarke_multipliers(params, x, y, lam0, mask, iters: int = 3, inner_iters: int = 50,
                       slack_weight: float = 1e-6):
  """min ||theta - A(lam, mu)|| over lam >= 0 and 0 <= mu_ij <= lam_i on the first-layer kink pairs.

  A(lam, mu) puts derivative mu_ij / lam_i in [0, 1] in place of relu'(z_ij) on each kink pair (the Clarke
  subdifferential); the problem is a convex QP. Solved by alternating exact minimizations, each of which can
  only lower the objective: (a) lam by NNLS with the kink derivatives s = mu / lam held fixed (a modified
  Gram matrix), (b) mu with lam held fixed, a box-constrained least squares that splits into one small
  problem per neuron (FISTA with a per-neuron step, in Gram space). Starts from relu'(0) = 0 with lam0 and
  returns (lam, mu, ||residual||) of the best iterate, never worse than the start.
  """
  if len(params) < 2:
    raise ValueError("the Clarke-aware residual needs a hidden layer")
  dtype = x.dtype
  sig = per_example_signals(params, x, y)
  has_bias = "b" in params[0]
  B = sig.back1                                   # (N, W1) d q_i / d a_1
  d_fixed = (sig.zs[0] > 0).astype(dtype)        # relu' with relu'(0) = 0
  mask = mask.astype(bool)
  xx = x @ x.T + (1.0 if has_bias else 0.0)       # (N, N)
  tiny = jnp.finfo(dtype).tiny

  def residual_norm(lam, mu):
    # explicit residual: the VJP part with relu'(0)=0, corrected on kink pairs
    g = weighted_gradient(params, x, y, lam)
    m = (mu - lam[:, None] * jnp.where(mask, d_fixed, 0.0)) * B
    g0 = dict(g[0])
    g0["w"] = g0["w"] + x.T @ m
    if has_bias:
      g0["b"] = g0["b"] + jnp.sum(m, axis=0)
    r = jax.tree_util.tree_map(lambda p, u: p - u, params, (g0,) + tuple(g[1:]))
    return tree_norm(r)

  def hmul(v):  # per-neuron Hessian of the mu-problem applied to v (N, W1), masked
    return jnp.where(mask, B * (xx @ (v * B)), 0.0)

  # Per-neuron Lipschitz constants by power iteration (columns are independent problems).
  def pw(_, v):
    w = hmul(v)
    return w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), tiny)
  v = lax.fori_loop(0, 20, pw, jnp.where(mask, 1.0, 0.0).astype(dtype))
  lip = 1.05 * jnp.maximum(jnp.linalg.norm(hmul(v), axis=0, keepdims=True), tiny)  # (1, W1)

  def mu_step(lam, mu):
    # r0: residual of W_1 (and b_1) with only the non-kink derivatives, projected on each x_i: C_ij.
    m0 = lam[:, None] * jnp.where(mask, 0.0, d_fixed) * B
    c = B * (x @ (params[0]["w"] - x.T @ m0))
    if has_bias:
      c = c + B * (params[0]["b"] - jnp.sum(m0, axis=0))[None, :]
    c = jnp.where(mask, c, 0.0)
    hi = jnp.where(mask, lam[:, None], 0.0)
    def body(_, st):
      mu, z, t = st
      mu_n = jnp.clip(z - (hmul(z) - c) / lip, 0.0, hi)
      t_n = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
      return mu_n, mu_n + ((t - 1) / t_n) * (mu_n - mu), t_n
    mu, _, _ = lax.fori_loop(0, inner_iters, body, (mu, mu, jnp.ones((), dtype)))
    return mu

  def lam_step(lam, mu):
    s = jnp.where(lam[:, None] > 0, mu / jnp.maximum(lam[:, None], tiny), 0.0)
    d1 = jnp.where(mask, jnp.clip(s, 0.0, 1.0), d_fixed)
    G, b = _gram_from(sig, d1, has_bias)
    lam_n = nnls.nnls_gram(G, _prefer_margin(b, margins_of(params, x, y), slack_weight)).x
    return lam_n, jnp.where(mask, lam_n[:, None] * jnp.clip(s, 0.0, 1.0), 0.0)

  mu0 = jnp.where(mask, lam0[:, None] * d_fixed, 0.0)  # the relu'(0) = 0 choice, feasible
  best = (lam0, mu0, residual_norm(lam0, mu0))
  def outer(_, st):
    lam, mu, best = st
    mu = mu_step(lam, mu)
    lam, mu = lam_step(lam, mu)
    f = residual_norm(lam, mu)
    better = f < best[2]
    best = (jnp.where(better, lam, best[0]), jnp.where(better, mu, best[1]), jnp.minimum(f, best[2]))
    return lam, mu, best
  _, _, best = lax.fori_loop(0, iters, outer, (lam0, mu0, best))
  return best


def certificate(params, x, y, loss: str = "logistic"):
  """(cert_eps_rel, cert_eps_abs) from the loss gradient alone (cheap: one VJP).

  -grad Loss = (1/n) sum_i -l'(q_i) grad q_i is a non-negative combination of the grad q_i, so with
  beta = cos(theta, -grad Loss) the best multipliers satisfy eps_rel <= sqrt(1 - beta^2); in absolute units
  at the normalized scale the chord bound is sqrt(2 (1 - beta)) / gamma_bar^(1/L).
  """
  q = margins_of(params, x, y)
  w = jax.nn.softmax(losses.log_loss_derivative(loss, q))  # -l'(q) up to scale; never underflows
  u = weighted_gradient(params, x, y, w)
  theta_norm = tree_norm(params)
  beta = nets.tree_dot(params, u) / jnp.maximum(theta_norm * tree_norm(u), jnp.finfo(x.dtype).tiny)
  beta = jnp.clip(beta, -1.0, 1.0)
  eps_rel = jnp.where(beta > 0, jnp.sqrt(jnp.maximum(1 - beta ** 2, 0.0)), 1.0)
  gamma = jnp.min(q) / theta_norm ** nets.degree(params)
  eps_abs = jnp.sqrt(2 * jnp.maximum(1 - beta, 0.0)) / jnp.where(
      gamma > 0, gamma ** (1.0 / nets.degree(params)), jnp.nan)
  return eps_rel, eps_abs


def kkt_report(params, x, y, *, kink_tol: float = 1e-3, clarke_iters: int = 3,
               clarke_inner: int = 50, loss: str = "logistic") -> KKTReport:
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
    lam_c, _, res_c = clarke_multipliers(tparams, x, y, lam, mask, clarke_iters, clarke_inner)
    eps_c = jnp.minimum(res_c / theta_t_norm, eps_rel)
  else:
    lam_c, eps_c = lam, eps_rel
  cert_rel, cert_abs = certificate(params, x, y, loss)
  return KKTReport(
      q_min=q_min, normalized_margin=jnp.min(q_raw) / theta_norm ** L, theta_norm=theta_norm,
      feasible=q_min > 0, eps_rel=eps_rel, delta=delta, lam=lam, slack=slack, support=lam > 0,
      nnls_converged=fit.converged, eps_rel_clarke=eps_c, delta_clarke=jnp.max(lam_c * slack),
      lam_clarke=lam_c, kink_pairs=jnp.sum(mask), kink_pairs_deep=deep,
      exact_kink_pairs=jnp.sum(kink_mask(tparams, x, 1e-6)[0]),
      kink_tol=jnp.asarray(kink_tol, x.dtype), cert_eps_rel=cert_rel, cert_eps_abs=cert_abs)


def summarize(report: KKTReport) -> dict:
  """The scalar entries of a (non-batched) report as Python numbers."""
  out = {}
  for k, v in report._asdict().items():
    if jnp.ndim(v) == 0:
      out[k] = v.item()
  out["support_size"] = int(jnp.sum(report.support))
  return out
