"""KKT residuals of the max-margin problem under other norms: which margin did an optimizer maximize?

Gradient descent on an L-homogeneous net converges in direction to a KKT point of
  min ||theta||  s.t.  q_i(theta) >= 1                                                           (P_norm)
with the l2 norm; steepest descent in another norm maximizes that norm's margin (Gronich & Vardi 2026,
arXiv 2602.16340): sign descent / Signum and Adam without its epsilon the l_inf margin, Muon the spectral
margin (the max over layers of ||W_l||_op; optax's Muon runs Adam on biases, a hybrid norm whose blocks are
the weight matrices in operator norm and the bias vectors in l_inf). Stationarity of (P_norm) says that
g = sum_i lambda_i grad q_i (lambda >= 0) lies in the cone of the subdifferential of ||.|| at theta, i.e. it
attains Hoelder's inequality:  <g, theta> = ||g||_* ||theta||  (||.||_* the dual norm).

The residual measured here is the best alignment over multipliers,
  a = max_{lambda >= 0} <g, theta> / (||g||_* ||theta||)  in (0, 1],   eps_norm = sqrt(1 - a^2),
scale-free and 0 exactly at a KKT point of (P_norm) (slackness aside, as eps_rel). For the l2 norm eps_norm IS
`kkt`'s eps_rel (the distance from theta to the cone {g} is ||theta|| sin(angle)). With Euler's identity
<J^T lambda, theta> = L q . lambda, so fixing q . lambda = 1 (nu_i = q_i lambda_i on the simplex):
  a = L / (||theta|| f*),   f* = min_{nu in simplex} ||J^T (nu / q)||_*  = max_{||u|| <= 1} min_i (J u)_i / q_i,
a bilinear saddle problem. It is solved by exponentiated gradient on nu against the best response u (the
polar of g: sign(g) for l_inf, U V^T for a matrix block), with one VJP and one JVP per iteration (no
Jacobian is formed). Both sides are certified: the best nu found gives an upper bound on f* (a lower bound on
a, so an UPPER bound on eps_norm), the averaged responses u_bar (||u_bar|| <= 1) a lower bound on f* by weak
duality (f(nu) >= <u, J^T lambda> >= min_i (J u)_i / q_i), so a LOWER bound on eps_norm. Both are reported.

`wd_residual` is the stationarity of training WITH weight decay (Loss + wd/2 ||theta||^2): there
theta = sum_i lambda_i grad q_i holds exactly with lambda_i = -loss'(q_i) / (n wd) (Buzaglo et al. 2023), all
positive for the logistic and exponential losses.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import losses
from jaxrecon import nets
from jaxrecon.stationarity import margins_of, weighted_gradient

def _leaves(tree):
  return jax.tree_util.tree_leaves(tree)


def _l2(leaves):
  return jnp.sqrt(sum(jnp.sum(jnp.square(v)) for v in leaves))


def _spectral_polar(v):
  if v.ndim != 2:
    return jnp.sign(v)
  u, _, vt = jnp.linalg.svd(v, full_matrices=False)
  return u @ vt


class Norm(NamedTuple):
  """A norm on the parameters, as the max-margin residual needs it: primal(leaves) = ||theta||,
  dual(leaves) = ||g||_*, polar(leaf) (per leaf) = u with ||u|| <= 1 and <u, g> = ||g||_*, and its label."""
  primal: Callable
  dual: Callable
  polar: Callable
  label: str


# The norm registry: the one place a norm is named; the residuals, the leakage study and its figure look it up.
NORMS: dict = {
    "l2": Norm(_l2, _l2, None, "l2"),  # polar: g / ||g|| over the whole tree (not per leaf), see `polar`
    "linf": Norm(lambda leaves: jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in leaves])),
                 lambda leaves: sum(jnp.sum(jnp.abs(v)) for v in leaves), jnp.sign, "l_inf"),
    # max of the matrices' operator norms and the vectors' l_inf norms (Muon on matrices, Adam on biases)
    "spectral": Norm(lambda leaves: jnp.max(jnp.stack([jnp.linalg.norm(v, 2) if v.ndim == 2 else
                                                       jnp.max(jnp.abs(v)) for v in leaves])),
                     lambda leaves: sum(jnp.sum(jnp.linalg.svd(v, compute_uv=False)) if v.ndim == 2 else
                                        jnp.sum(jnp.abs(v)) for v in leaves), _spectral_polar, "spectral"),
}
NormName = Literal["l2", "linf", "spectral"]


def _get(norm: str) -> Norm:
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; expected one of {tuple(NORMS)}")
  return NORMS[norm]


def primal_norm(tree, norm: str) -> jax.Array:
  """||theta||: l2 (the whole vector), linf (largest |entry|), spectral (max of the matrices' operator norms
  and the vectors' l_inf norms: Muon on matrices, Adam on biases)."""
  return _get(norm).primal(_leaves(tree))


def dual_norm(tree, norm: str) -> jax.Array:
  """||g||_*: l2, l1 (dual of l_inf), nuclear + l1 summed over blocks (dual of the max of block norms)."""
  return _get(norm).dual(_leaves(tree))


def polar(tree, norm: str):
  """u with ||u|| <= 1 and <u, g> = ||g||_*: g / ||g||, sign(g), or U V^T per matrix and sign per vector."""
  n = _get(norm)
  if n.polar is None:  # l2: the whole tree scaled
    scale = primal_norm(tree, "l2")
    return jax.tree_util.tree_map(lambda v: v / jnp.maximum(scale, jnp.finfo(v.dtype).tiny), tree)
  return jax.tree_util.tree_map(n.polar, tree)


def alignment(g, theta, norm: str) -> jax.Array:
  """<g, theta> / (||g||_* ||theta||), <= 1 by Hoelder; 1 iff g is in the subdifferential cone at theta."""
  return nets.tree_dot(g, theta) / (dual_norm(g, norm) * primal_norm(theta, norm))


class NormKKT(NamedTuple):
  """(P_norm)'s stationarity residual, certified from both sides. eps = sqrt(1 - alignment^2)."""
  eps_upper: jax.Array   # sqrt(1 - a_lower^2): the best multipliers found achieve it
  eps_lower: jax.Array   # no multipliers do better (weak duality with the averaged responses)
  lam: jax.Array         # (N,) the best multipliers found, scaled so that q . lam = 1 at theta as given
  feasible: jax.Array    # q_min > 0 (otherwise every value is NaN)


def norm_kkt(params, x, y, norm: str, iters: int = 2000, step: float = 0.0) -> NormKKT:
  """The stationarity residual of (P_norm) at `params` (raw scale: the residual is scale-free).

  Exponentiated gradient over nu (simplex) with step `step` / max|grad| (0: sqrt(2 log N / iters)), the best
  response u = polar(J^T lambda) each iteration; pure, jit-able (norm and iters static)."""
  q = margins_of(params, x, y)
  n = q.shape[0]
  L = nets.degree(params)
  theta_norm = primal_norm(params, norm)
  feasible = jnp.min(q) > 0
  qs = jnp.where(feasible, q, 1.0)
  eta = step or math.sqrt(2.0 * math.log(max(n, 2)) / iters)
  _, jvp_fn = jax.linearize(lambda p: margins_of(p, x, y), params)

  def f_and_u(nu):
    g = weighted_gradient(params, x, y, nu / qs)
    return dual_norm(g, norm), polar(g, norm)

  def body(carry, _):
    nu, best_f, best_nu, u_sum = carry
    f, u = f_and_u(nu)
    grad = jvp_fn(u) / qs                  # the subgradient of f at nu: (J u)_i / q_i
    better = f < best_f
    best_f = jnp.where(better, f, best_f)
    best_nu = jnp.where(better, nu, best_nu)
    u_sum = jax.tree_util.tree_map(jnp.add, u_sum, u)
    z = -eta * grad / jnp.maximum(jnp.max(jnp.abs(grad)), jnp.finfo(q.dtype).tiny)
    nu = nu * jnp.exp(z - jnp.max(z))
    return (nu / jnp.sum(nu), best_f, best_nu, u_sum), None

  nu0 = jnp.full((n,), 1.0 / n, q.dtype)
  zero_u = jax.tree_util.tree_map(jnp.zeros_like, params)
  (nu, best_f, best_nu, u_sum), _ = jax.lax.scan(body, (nu0, jnp.inf, nu0, zero_u), None, length=iters)
  f_last, _ = f_and_u(nu)
  best_nu = jnp.where(f_last < best_f, nu, best_nu)
  best_f = jnp.minimum(best_f, f_last)
  u_bar = jax.tree_util.tree_map(lambda s: s / iters, u_sum)
  u_bar = jax.tree_util.tree_map(lambda v: v / jnp.maximum(primal_norm(u_bar, norm), 1.0), u_bar)
  f_lower = jnp.min(jvp_fn(u_bar) / qs)
  a_lower = L / (theta_norm * best_f)                      # attained
  a_upper = jnp.minimum(L / (theta_norm * jnp.maximum(f_lower, jnp.finfo(q.dtype).tiny)), 1.0)
  a_upper = jnp.where(f_lower > 0, a_upper, 1.0)
  eps = lambda a: jnp.sqrt(jnp.maximum(1.0 - jnp.square(jnp.minimum(a, 1.0)), 0.0))  # noqa: E731
  nan = jnp.full((), jnp.nan, q.dtype)
  return NormKKT(jnp.where(feasible, eps(a_lower), nan), jnp.where(feasible, eps(a_upper), nan),
                 jnp.where(feasible, best_nu / qs, jnp.nan), feasible)


def wd_residual(params, x, y, loss: str, weight_decay: float) -> jax.Array:
  """||theta - sum_i lambda_i grad q_i|| / ||theta|| with lambda_i = -loss'(q_i) / (n wd): the relative gradient
  of Loss + wd/2 ||theta||^2 (0 at a stationary point of weight-decay training)."""
  q = margins_of(params, x, y)
  lam = losses.loss_derivative(loss, q) / (q.shape[0] * weight_decay)  # -loss'(q_i) / (n wd)
  g = weighted_gradient(params, x, y, lam)
  r = jax.tree_util.tree_map(jnp.subtract, params, g)
  return primal_norm(r, "l2") / primal_norm(params, "l2")
