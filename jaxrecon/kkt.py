"""KKT diagnostics of the max-margin problem (P): min 1/2 ||theta||^2 s.t. q_i(theta) >= 1.

For an L-homogeneous net, theta is normalized to the problem's scale, theta_tilde = theta / q_min^(1/L)
(so q_min = 1), and compared with the KKT conditions:
  stationarity  r = theta_tilde - sum_i lambda_i grad q_i(theta_tilde),   eps_rel = ||r|| / ||theta_tilde||
  slackness     delta = max_i lambda_i (q_i - 1)
with the best multipliers lambda >= 0 from a non-negative least squares. sum_i c_i grad q_i is ONE
vector-Jacobian product; the NNLS needs only the n x n Gram matrix of the per-example gradients, built from a
few matrix products (no per-example Jacobian), and J theta = L q (Euler's identity): both in
`jaxrecon.stationarity` (re-exported here).

ReLU kinks. eps_rel above is the paper's epsilon at theta: relu'(0) = 0, every other derivative exact. Where
w_j . x_i = 0 exactly, the Clarke subdifferential lets relu' be anything in [0, 1]; such pairs are counted
(`exact_kink_pairs`, within 1e-6 of the largest pre-activation). The RELAXED residual `eps_rel_relaxed` is a
different quantity: every first-layer pair within `kink_tol` x max|z_1| of its kink (pairs that are NOT at the
kink) gets its own derivative in [0, 1], solved jointly with lambda (a convex QP, certified by a duality gap).
It is a Goldstein-type residual over a neighbourhood of theta, not epsilon at theta: it depends on the
tolerance, and `relax_radius` says how far that neighbourhood reaches in the data's units (the largest distance
of a freed point to its neuron's hyperplane, relative to the largest data norm max_i ||x_i||, not the RMS data
radius `data.rms_radius` the studies use). Deeper layers are not freed.

All functions are pure and act on one training set; vmap them over sets or checkpoints at the boundary.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxrecon import losses
from jaxrecon import nets
from jaxrecon import nnls
from jaxrecon.stationarity import (_gram_from, gram, margins_of, normalize, per_example_signals,  # noqa: F401
                                   stationarity_residual, tree_norm, weighted_gradient)


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
  eps_rel_relaxed: jax.Array    # NOT eps at theta: first-layer pairs within kink_tol of the kink freed in [0, 1]
  eps_rel_relaxed_lower: jax.Array  # certified lower bound on the relaxed QP's optimum (lam <= 4 max lam)
  relaxed_gap: jax.Array        # its duality gap relative to 1/2 ||r||^2 (<= 1e-6 when solved)
  relaxed_iters: jax.Array
  delta_relaxed: jax.Array
  lam_relaxed: jax.Array        # (N,)
  relax_radius: jax.Array       # largest distance of a freed x_i to its neuron's hyperplane / max ||x_i||
  kink_pairs: jax.Array         # number of first-layer (point, neuron) pairs within kink_tol of the kink
  freed_pairs: jax.Array        # of those, the ones freed: all on small nets, else the closest RELAX_MAX_PAIRS
  exact_kink_pairs: jax.Array   # pairs within 1e-6 (at the kink up to rounding): the only Clarke freedom at theta
  kink_pairs_deep: jax.Array    # the same for deeper hidden layers (not freed)
  kink_tol: jax.Array
  cert_eps_rel: jax.Array       # upper bound on eps_rel from lambda ~ -l'(q): sin angle(theta, -grad Loss)
  cert_eps_abs: jax.Array       # sqrt(2 (1 - beta)) / gamma_bar^(1/L), beta = cos angle(theta, -grad Loss)


def best_multipliers(params, x, y, slack_weight: float = 1e-6, **nnls_kwargs) -> nnls.NNLSResult:
  """argmin_{lam >= 0} 1/2 ||theta - sum_i lam_i grad q_i||^2 + rho sum_i lam_i (q_i / q_min - 1).

  Via the Gram matrix and J theta = L q. The small slackness term (rho = slack_weight * mean(L q)) only
  decides between multipliers that fit stationarity equally well (a singular Gram, e.g. points in a low
  dimensional subspace): it prefers those on the margin, so delta is not inflated by an arbitrary choice.

  Args:
    params: the network, normalized (`normalize`) when the multipliers should be the paper's.
    x: (N, D) points; y: (N,) labels.
    slack_weight: rho relative to mean(L q).
    **nnls_kwargs: `nnls.nnls_gram`'s options (iterations, tolerances).
  Returns:
    `nnls.NNLSResult`: x (N,) the multipliers, the objective and whether the active set converged.
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


class RelaxedFit(NamedTuple):
  """The relaxed (kink-neighbourhood) multipliers and the certificate of their optimality."""
  lam: jax.Array        # (N,)
  mu: jax.Array         # (N, W1) mu_ij in [0, lam_i] on freed pairs, 0 elsewhere
  residual: jax.Array   # ||theta - A(lam, mu)||, computed explicitly (one VJP)
  lower: jax.Array      # certified lower bound on the QP's optimal residual over lam_i <= lam_bound
  lam_bound: jax.Array  # the bound the certificate assumes (RELAX_LAM_BOUND x the largest lam found)
  gap: jax.Array        # Frank-Wolfe duality gap of 1/2 ||r||^2 on {lam_i <= lam_bound}
  iterations: jax.Array


RELAX_MAX_ITERS = 10000   # accelerated projected-gradient steps at most
RELAX_CHECK_EVERY = 50    # steps between duality-gap checks
RELAX_TOL = 1e-5          # stop when gap <= RELAX_TOL * 1/2 ||r||^2 (residual certified to ~5e-6 relative)
RELAX_LAM_BOUND = 4.0     # the certificate covers multipliers up to 4x the largest one found
RELAX_MAX_PAIRS = 512     # large nets: at most this many freed pairs (the closest to their kink) enter the QP
RELAX_SCATTER_BUDGET = 3e7  # nets with 2 N^2 W1 below this free EVERY pair within kink_tol (no cap)


def relax_all_pairs(n: int, width: int) -> bool:
  """Whether the relaxed QP of n points and a first layer of `width` neurons frees every pair within kink_tol.

  Then the QP's operators are applied through dense (N, W1) products (2 N^2 W1 per step); otherwise the
  RELAX_MAX_PAIRS pairs closest to their kink enter, with their (N + P)-sized Gram matrix formed once.
  """
  return 2.0 * n * n * width <= RELAX_SCATTER_BUDGET


class FreedPairs(NamedTuple):
  """First-layer (point, neuron) pairs freed by the relaxation: a static-size list, `valid` marks real ones."""
  point: jax.Array   # (P,) int
  neuron: jax.Array  # (P,) int
  valid: jax.Array   # (P,) bool: |z_ij| <= kink_tol * max |z_1|


def freed_pairs(params, x, kink_tol: float, max_pairs: int = RELAX_MAX_PAIRS) -> FreedPairs:
  """The pairs within kink_tol x max|z_1| of their kink, the closest `max_pairs` of them when there are more."""
  z = nets.preactivations(params, x)[0]
  s = jnp.abs(z) / jnp.max(jnp.abs(z))
  k = min(max_pairs, s.size)
  neg, flat = lax.top_k(-s.reshape(-1), k)
  return FreedPairs(flat // z.shape[1], flat % z.shape[1], -neg <= kink_tol)


def _project_pairs(a: jax.Array, v: jax.Array, pairs: FreedPairs):
  """Euclidean projection of (lam, mu) = (a (N,), v (P,)) onto {lam_i >= 0, 0 <= mu_p <= lam_point(p)}.

  Per point: lam* = max_k (a + sum of its k largest v) / (1 + k) (the root of lam - a - sum relu(v - lam);
  every candidate is a lower bound on it), then lam = max(lam*, 0), mu = clip(v, 0, lam). Pairs are grouped
  by point with one sort; invalid pairs sit in a dummy group and get mu = 0.
  """
  n = a.shape[0]
  seg = jnp.where(pairs.valid, pairs.point, n)
  order = jnp.lexsort((-v, seg))                      # by point, then value descending
  vs, ss = v[order], seg[order]
  pos = jnp.arange(v.shape[0])
  start = jax.ops.segment_min(pos, ss, num_segments=n + 1)[ss]
  cs = jnp.cumsum(vs)
  within = cs - jnp.where(start > 0, cs[jnp.maximum(start - 1, 0)], 0.0)
  a_ext = jnp.concatenate([a, jnp.zeros((1,), a.dtype)])
  cand = (a_ext[ss] + within) / (1.0 + (pos - start + 1)).astype(a.dtype)
  best = jax.ops.segment_max(cand, ss, num_segments=n + 1)[:n]
  lam = jnp.maximum(jnp.maximum(a, best), 0.0)
  return lam, jnp.where(pairs.valid, jnp.clip(v, 0.0, lam[pairs.point]), 0.0)


class _QP(NamedTuple):
  """The relaxed QP in Gram space: f(z) = 1/2 ||theta||^2 - <b, z> + 1/2 <z, Qz> over z = (lam, mu)."""
  grad: Callable      # (lam, mu) -> Qz - b, split as (lam part, mu part)
  bl: jax.Array       # b's lam part: <theta, g_i>
  bm: jax.Array       # b's mu part: <theta, g_p>
  half_t2: jax.Array  # 1/2 ||theta||^2


def _relaxed_qp(params, x, sig, pairs: FreedPairs, act) -> _QP:
  """The QP's gradient, from dense (N, W1) products when every pair is freed, else from its (N + P) Gram."""
  dtype = x.dtype
  has_bias = "b" in params[0]
  B = sig.back1                                   # (N, W1) d q_i / d a_1
  pi, pj = pairs.point, pairs.neuron
  freed = jnp.zeros(B.shape, bool).at[pi, pj].set(pairs.valid)
  d_free = jnp.where(freed, 0.0, act)             # relu' off the freed pairs
  G, bl = _gram_from(sig, d_free, has_bias)       # the lam-part: quadratic and linear terms
  Mf = d_free * B
  xx = x @ x.T + (1.0 if has_bias else 0.0)
  Bp = jnp.where(pairs.valid, B[pi, pj], 0.0)     # g_p = Bp [x_i; 1] e_j^T: the freed pair's gradient
  bm = Bp * sig.zs[0][pi, pj]                     # <theta, g_p>
  if relax_all_pairs(*B.shape):  # through dense (N, W1) products: H mu = Bp (xx @ S)[p], S = scatter(Bp mu)
    def grad(lam, mu):
      t1 = xx @ jnp.zeros(B.shape, dtype).at[pi, pj].add(Bp * mu)
      t2 = xx @ (lam[:, None] * Mf)
      return G @ lam + jnp.sum(Mf * t1, axis=1) - bl, Bp * (t1 + t2)[pi, pj] - bm
  else:  # the (N + P) Gram matrix once: C (N, P) = <g_k(lam-part), g_p>, H (P, P) = <g_p, g_p'>
    C = Mf[:, pj] * xx[:, pi] * Bp[None, :]
    H = jnp.where(pj[:, None] == pj[None, :], xx[pi][:, pi], 0.0) * (Bp[:, None] * Bp[None, :])

    def grad(lam, mu):
      return G @ lam + C @ mu - bl, H @ mu + C.T @ lam - bm
  return _QP(grad, bl, bm, 0.5 * tree_norm(params) ** 2)


def _qp_value(qp: _QP, lam, mu, gl, gm):  # f = 1/2 ||theta||^2 - <b, z> + 1/2 <z, Qz>, Qz = grad + b
  return qp.half_t2 + 0.5 * (jnp.vdot(lam, gl - qp.bl) + jnp.vdot(mu, gm - qp.bm))


def _qp_lipschitz(qp: _QP, lam0, pairs: FreedPairs):
  """1.02 x the largest eigenvalue of Q, by 50 power iterations."""
  tiny = jnp.finfo(lam0.dtype).tiny

  def pw(_, v):
    gl, gm = qp.grad(*v)
    nrm = jnp.maximum(jnp.sqrt(jnp.sum((gl + qp.bl) ** 2) + jnp.sum((gm + qp.bm) ** 2)), tiny)
    return (gl + qp.bl) / nrm, (gm + qp.bm) / nrm
  v = lax.fori_loop(0, 50, pw, (jnp.ones_like(lam0), pairs.valid.astype(lam0.dtype)))
  gl, gm = qp.grad(*v)
  return 1.02 * jnp.sqrt(jnp.sum((gl + qp.bl) ** 2) + jnp.sum((gm + qp.bm) ** 2)) + tiny


def _qp_gap(qp: _QP, lam, mu, bound, pairs: FreedPairs):
  """(Frank-Wolfe gap on {lam_i <= bound}, f) at (lam, mu)."""
  gl, gm = qp.grad(lam, mu)
  inner = jnp.vdot(gl, lam) + jnp.vdot(gm, mu)
  ray = gl + jax.ops.segment_sum(jnp.where(pairs.valid, jnp.minimum(gm, 0.0), 0.0), pairs.point,
                                 num_segments=lam.shape[0])
  return inner - bound * jnp.sum(jnp.minimum(ray, 0.0)), _qp_value(qp, lam, mu, gl, gm)


def _qp_solve(qp: _QP, lam, mu, lip, pairs: FreedPairs):
  """Accelerated projected gradient with adaptive restart from (lam, mu) until the certified gap closes:
  (iterations, lam, mu, gap, f)."""
  dtype = lam.dtype

  def fista(_, st):
    lam, mu, zl, zm, t = st
    gl, gm = qp.grad(zl, zm)
    nl, nm = _project_pairs(zl - gl / lip, zm - gm / lip, pairs)
    restart = jnp.vdot(zl - nl, nl - lam) + jnp.vdot(zm - nm, nm - mu) > 0
    t_n = jnp.where(restart, 1.0, 0.5 * (1 + jnp.sqrt(1 + 4 * t * t)))
    beta = jnp.where(restart, 0.0, (t - 1) / t_n)
    return nl, nm, nl + beta * (nl - lam), nm + beta * (nm - mu), t_n

  def cond(st):
    return (st[0] < RELAX_MAX_ITERS) & (st[2] > RELAX_TOL * st[3])

  def body(st):
    it, inner, _, _ = st
    inner = lax.fori_loop(0, RELAX_CHECK_EVERY, fista, inner)
    gap, f = _qp_gap(qp, inner[0], inner[1], RELAX_LAM_BOUND * jnp.max(inner[0]), pairs)
    return it + RELAX_CHECK_EVERY, inner, gap, f

  gap, f = _qp_gap(qp, lam, mu, RELAX_LAM_BOUND * jnp.max(lam), pairs)
  st = (jnp.zeros((), jnp.int32), (lam, mu, lam, mu, jnp.ones((), dtype)), gap, f)
  it, (lam, mu, _, _, _), gap, f = lax.while_loop(cond, body, st)
  return it, lam, mu, gap, f


def relaxed_multipliers(params, x, y, lam0, pairs: FreedPairs) -> RelaxedFit:
  """min ||theta - A(lam, mu)|| over lam >= 0 and 0 <= mu_p <= lam_i on the freed first-layer pairs p = (i, j).

  A(lam, mu) = sum_i lam_i grad q_i with relu'(z_ij) replaced by mu_ij / lam_i in [0, 1] on each freed pair.
  A is linear in (lam, mu) jointly and the constraints form a convex cone, so this is a convex QP; it is
  solved jointly by accelerated projected gradient in Gram space (adaptive restart, exact projection onto the
  cone) from the relu'(0) = 0 solution lam0, on the (N + P)-dimensional Gram matrix (N points, P freed pairs).
  Every RELAX_CHECK_EVERY steps the Frank-Wolfe gap on {lam_i <= lam_bound} is evaluated: f(z) - gap is a
  certified lower bound on the optimum there (f = 1/2 ||r||^2); the loop stops when gap <= RELAX_TOL f.
  Pure; jit/vmap-able (a while_loop).
  """
  if len(params) < 2:
    raise ValueError("the relaxed residual needs a hidden layer")
  sig = per_example_signals(params, x, y)
  B = sig.back1
  pi, pj = pairs.point, pairs.neuron
  act = (sig.zs[0] > 0).astype(x.dtype)
  qp = _relaxed_qp(params, x, sig, pairs, act)
  lip = _qp_lipschitz(qp, lam0, pairs)
  lam, mu = _project_pairs(lam0, lam0[pi] * act[pi, pj], pairs)
  it, lam, mu, gap, f = _qp_solve(qp, lam, mu, lip, pairs)

  g = weighted_gradient(params, x, y, lam)      # the explicit residual: VJP with relu'(0) = 0, corrected
  m = jnp.zeros(B.shape, x.dtype).at[pi, pj].add(jnp.where(pairs.valid, (mu - lam[pi] * act[pi, pj]) * B[pi, pj],
                                                           0.0))
  g0 = dict(g[0])
  g0["w"] = g0["w"] + x.T @ m
  if "b" in params[0]:
    g0["b"] = g0["b"] + jnp.sum(m, axis=0)
  r = optax.tree.sub(params, (g0,) + tuple(g[1:]))
  lower = jnp.sqrt(2.0 * jnp.maximum(f - gap, 0.0))
  return RelaxedFit(lam, mu, tree_norm(r), lower, RELAX_LAM_BOUND * jnp.max(lam), gap, it)


def relax_radius(params, x, pairs: FreedPairs) -> jax.Array:
  """Largest distance |w_j . x_i + b_j| / ||w_j|| of a freed pair, relative to the largest data norm max_i ||x_i||
  (the largest, not the RMS `data.rms_radius`: a bound on how far the freed neighbourhood reaches)."""
  z = nets.preactivations(params, x)[0][pairs.point, pairs.neuron]
  dist = jnp.abs(z) / jnp.maximum(jnp.linalg.norm(params[0]["w"], axis=0)[pairs.neuron], 1e-300)
  r = jnp.max(jnp.linalg.norm(x, axis=1))
  return jnp.max(jnp.where(pairs.valid, dist, 0.0)) / jnp.maximum(r, jnp.finfo(x.dtype).tiny)


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


def kkt_report(params, x, y, *, kink_tol: float = 1e-3, relaxed: bool = True,
               loss: str = "logistic") -> KKTReport:
  """All KKT diagnostics of one network on one set. Pure; `kkt.report` is its one jitted form.

  Args:
    params: the network (a bias-free ReLU MLP, optionally with a first-layer bias); its dtype is the report's.
    x: (N, D) the training points.
    y: (N,) labels: +-1 for one output, class indices for K outputs.
    kink_tol: first-layer pairs with |w.x + b| <= kink_tol x max |z_1| count as at their kink (the relaxed
      residual frees them; traced, so every tolerance shares one program).
    relaxed: also solve the relaxed QP (False: its fields repeat the exact ones, gap 0, 0 iterations).
    loss: the training loss's registry name (`losses.LOSSES`), for the cheap certificate.
  Returns:
    A `KKTReport`: eps_rel (the paper's epsilon at theta), delta, the multipliers and support, q_min, the
    relaxed residual with its bounds, radius and pair counts, and the certificate.
  """
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
  n, width = x.shape[0], tparams[0]["w"].shape[1]
  pairs = freed_pairs(tparams, x, kink_tol, n * width if relax_all_pairs(n, width) else RELAX_MAX_PAIRS)
  zero = jnp.zeros((), x.dtype)
  if relaxed:
    rf = relaxed_multipliers(tparams, x, y, lam, pairs)
    lam_c, eps_c, eps_lo = rf.lam, rf.residual / theta_t_norm, rf.lower / theta_t_norm
    gap_rel = rf.gap / jnp.maximum(0.5 * rf.residual ** 2, jnp.finfo(x.dtype).tiny)
    iters = rf.iterations
  else:
    lam_c, eps_c, eps_lo, gap_rel, iters = lam, eps_rel, eps_rel, zero, jnp.zeros((), jnp.int32)
  cert_rel, cert_abs = certificate(params, x, y, loss)
  return KKTReport(
      q_min=q_min, normalized_margin=jnp.min(q_raw) / theta_norm ** L, theta_norm=theta_norm,
      feasible=q_min > 0, eps_rel=eps_rel, delta=delta, lam=lam, slack=slack, support=lam > 0,
      nnls_converged=fit.converged, eps_rel_relaxed=eps_c, eps_rel_relaxed_lower=eps_lo,
      relaxed_gap=gap_rel, relaxed_iters=iters, delta_relaxed=jnp.max(lam_c * slack),
      lam_relaxed=lam_c, relax_radius=relax_radius(tparams, x, pairs), kink_pairs=jnp.sum(mask),
      freed_pairs=jnp.sum(pairs.valid),
      kink_pairs_deep=deep, exact_kink_pairs=jnp.sum(kink_mask(tparams, x, 1e-6)[0]),
      kink_tol=jnp.asarray(kink_tol, x.dtype), cert_eps_rel=cert_rel, cert_eps_abs=cert_abs)


# The one compiled KKT report every job and test calls (relaxed and loss static, kink_tol traced: one program per
# shape and option set, whatever the tolerance, so no call site builds its own jit).
report = jax.jit(kkt_report, static_argnames=("relaxed", "loss"))


def summarize(report: KKTReport) -> dict:
  """The scalar entries of a (non-batched) report as Python numbers.

  Args:
    report: a `KKTReport` of one network on one set.
  Returns:
    {field: float / int / bool} for every scalar field, plus `support_size` and, with the relaxed fields,
    `relaxed_capped` (True when the pair cap left kink pairs out: eps_rel_relaxed is then an upper bound).
  """
  out = {}
  for k, v in report._asdict().items():
    if jnp.ndim(v) == 0:
      out[k] = v.item()
  out["support_size"] = int(jnp.sum(report.support))
  # Capped (large nets): only the RELAX_MAX_PAIRS pairs closest to their kink were freed, so eps_rel_relaxed is
  # an UPPER bound on the all-pairs relaxed residual and eps_rel_relaxed_lower bounds the capped problem only.
  if "freed_pairs" in out and "kink_pairs" in out:
    out["relaxed_capped"] = bool(out["freed_pairs"] < out["kink_pairs"])
  return out
