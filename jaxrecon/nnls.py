"""Non-negative least squares in Gram form, in JAX (jit-able and vmap-able).

  x* = argmin_{x >= 0} 1/2 x^T G x - b^T x,

which is min_{x >= 0} ||t - J^T x||^2 when G = J J^T and b = J t (the KKT multipliers: J holds the per-example
gradients, t = theta). Accelerated projected gradient gives a warm start; the Lawson-Hanson active-set
method then finishes it exactly (one linear solve per change of the active set), so the answer matches
`scipy.optimize.nnls` to solver precision while taking few solves when most points are support vectors.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax


class NNLSResult(NamedTuple):
  x: jax.Array          # (n,) the minimizer, >= 0
  dual: jax.Array       # (n,) b - G x: <= tol on the zero set, ~0 on the support at the optimum
  iterations: jax.Array  # Lawson-Hanson outer iterations
  converged: jax.Array   # the KKT conditions of the NNLS hold to tol


def _power_norm(G: jax.Array, iters: int = 30) -> jax.Array:
  v = jnp.ones(G.shape[0], G.dtype) / jnp.sqrt(G.shape[0])
  def body(_, v):
    w = G @ v
    return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(G.dtype).tiny)
  v = lax.fori_loop(0, iters, body, v)
  return jnp.vdot(v, G @ v)


def projected_gradient(G: jax.Array, b: jax.Array, x0: jax.Array, iters: int) -> jax.Array:
  """FISTA with restarts on the non-negative orthant (a warm start; not exact on its own)."""
  lip = 1.01 * _power_norm(G)
  def f(x):
    return 0.5 * x @ (G @ x) - b @ x
  def body(_, state):
    x, z, t, fx = state
    x_new = jnp.maximum(z - (G @ z - b) / lip, 0.0)
    f_new = f(x_new)
    restart = f_new > fx
    t_new = jnp.where(restart, 1.0, 0.5 * (1 + jnp.sqrt(1 + 4 * t * t)))
    z_new = jnp.where(restart, x, x_new + ((t - 1) / t_new) * (x_new - x))
    x_new = jnp.where(restart, x, x_new)
    return x_new, z_new, t_new, jnp.minimum(f_new, fx)
  x0 = jnp.maximum(x0, 0.0)
  init = (x0, x0, jnp.ones((), G.dtype), f(x0))
  return lax.fori_loop(0, iters, body, init)[0]


def _solve_on(G: jax.Array, b: jax.Array, active: jax.Array) -> jax.Array:
  """Least squares restricted to the active set: s_P = G_PP^{-1} b_P, s = 0 elsewhere."""
  mask = active[:, None] & active[None, :]
  ridge = 10 * jnp.finfo(G.dtype).eps * jnp.max(jnp.diag(G))
  A = jnp.where(mask, G, 0.0) + jnp.diag(jnp.where(active, ridge, 1.0))
  s = jnp.linalg.solve(A, jnp.where(active, b, 0.0))
  return jnp.where(active, s, 0.0)


def nnls_gram(G: jax.Array, b: jax.Array, *, tol: Optional[float] = None,
              max_iter: Optional[int] = None, warm_iters: int = 300) -> NNLSResult:
  """argmin_{x >= 0} 1/2 x^T G x - b^T x for a PSD G (n, n) and b (n,)."""
  n = b.shape[0]
  dtype = G.dtype
  scale = jnp.maximum(jnp.max(jnp.abs(jnp.diag(G))), jnp.finfo(dtype).tiny)
  G, b = G / scale, b / scale  # same minimizer, O(1) entries
  if tol is None:
    tol = 10 * n * jnp.finfo(dtype).eps * jnp.maximum(jnp.max(jnp.abs(b)), 1.0)
  max_iter = 3 * n if max_iter is None else max_iter
  tiny = jnp.finfo(dtype).tiny

  def inner(x, active):
    # Lawson-Hanson inner loop: step back toward x until the restricted solution is feasible.
    def cond(state):
      x, active, s, k = state
      return jnp.any(active & (s <= 0)) & (k < n + 1)
    def body(state):
      x, active, s, k = state
      bad = active & (s <= 0)
      ratio = jnp.where(bad, x / jnp.maximum(x - s, tiny), jnp.inf)
      alpha = jnp.clip(jnp.min(ratio), 0.0, 1.0)
      x = x + alpha * (s - x)
      active = active & (x > tiny) & ~(bad & (ratio <= alpha))
      x = jnp.where(active, x, 0.0)
      return x, active, _solve_on(G, b, active), k + 1
    x, active, s, _ = lax.while_loop(cond, body, (x, active, _solve_on(G, b, active), 0))
    return jnp.where(active, jnp.maximum(s, 0.0), 0.0), active

  x0 = projected_gradient(G, b, jnp.zeros(n, dtype), warm_iters) if warm_iters else jnp.zeros(n, dtype)
  active0 = x0 > 0
  x, active = lax.cond(jnp.any(active0), inner, lambda x, a: (x, a), x0, active0)

  def outer_cond(state):
    x, active, it = state
    w = b - G @ x
    return (it < max_iter) & jnp.any(~active & (w > tol))
  def outer_body(state):
    x, active, it = state
    w = b - G @ x
    j = jnp.argmax(jnp.where(active, -jnp.inf, w))
    x, active = inner(x, active.at[j].set(True))
    return x, active, it + 1
  x, active, it = lax.while_loop(outer_cond, outer_body, (x, active, jnp.zeros((), jnp.int32)))
  w = b - G @ x
  converged = jnp.all(jnp.where(active, jnp.abs(w) <= 1e3 * tol, w <= tol))
  return NNLSResult(x, w * scale, it, converged)
