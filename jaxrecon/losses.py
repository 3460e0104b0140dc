"""Margins and margin losses, stable from q = -1e4 to 1e4 in float32 and float64.

Binary: q_i = y_i Phi(x_i) with y_i in {-1, +1}. Multiclass: q_i = Phi_{y_i}(x_i) - max_{j != y_i}
Phi_j(x_i) with integer y_i. Both are L-homogeneous in theta, like Phi.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Exponential loss e^{-q}: exact for -q <= threshold, continued by its tangent line beyond (so it stays
# finite, convex, decreasing and with a non-zero gradient at q = -1e4 where e^{1e4} overflows any dtype).
_EXP_LINEAR_FROM = {jnp.dtype(jnp.float32): 60.0, jnp.dtype(jnp.float64): 600.0}


def margins(out: jax.Array, y: jax.Array) -> jax.Array:
  """q_i from network outputs: out (N,) with y in {-1,+1}, or out (N, K) with integer y."""
  if out.ndim == y.ndim:  # binary, scalar output
    return y.astype(out.dtype) * out
  k = out.shape[-1]
  onehot = jax.nn.one_hot(y, k, dtype=out.dtype)
  true = jnp.sum(out * onehot, axis=-1)
  other = jnp.max(jnp.where(onehot > 0, -jnp.inf, out), axis=-1)
  return true - other


def margin_cotangent(out: jax.Array, y: jax.Array) -> jax.Array:
  """c_i with grad_theta q_i = d/dtheta <c_i, out_i>: y_i for binary ((N, 1)), e_y - e_{j*} for K-class."""
  if out.ndim == y.ndim:
    return y.astype(out.dtype)[:, None]
  k = out.shape[-1]
  onehot = jax.nn.one_hot(y, k, dtype=out.dtype)
  other = jnp.argmax(jnp.where(onehot > 0, -jnp.inf, out), axis=-1)
  return onehot - jax.nn.one_hot(other, k, dtype=out.dtype)


def logistic(q: jax.Array) -> jax.Array:
  """log(1 + e^{-q}), elementwise, without overflow; ~e^{-q} (down to the dtype's tiny) for large q."""
  return jax.nn.softplus(-q)


def exponential(q: jax.Array) -> jax.Array:
  """e^{-q}, continued linearly beyond -q = 60 (float32) / 600 (float64) so it never overflows."""
  t = _EXP_LINEAR_FROM.get(jnp.dtype(q.dtype), 60.0)
  s = -q
  safe = jnp.minimum(s, t)
  return jnp.where(s <= t, jnp.exp(safe), jnp.exp(t) * (1.0 + (s - t)))


def loss_derivative(name: str, q: jax.Array) -> jax.Array:
  """-l'(q) >= 0: the weight each sample gets in -grad Loss = sum_i -l'(q_i) grad q_i."""
  if name == "logistic":
    return jax.nn.sigmoid(-q)
  if name == "exponential":
    t = _EXP_LINEAR_FROM.get(jnp.dtype(q.dtype), 60.0)
    return jnp.exp(jnp.minimum(-q, t))
  raise ValueError(f"unknown loss {name!r}; expected 'logistic' or 'exponential'")


def log_loss(name: str, q: jax.Array) -> jax.Array:
  """log l(q_i), elementwise, finite for any margin (l(q) itself underflows to 0 past q ~ 745 in float64)."""
  if name == "exponential":
    return -q
  if name == "logistic":
    big = q > 30.0
    q_lo = jnp.where(big, 0.0, q)   # double-where: no NaN gradient from the branch not taken
    q_hi = jnp.where(big, q, 31.0)
    small_branch = jnp.log(jax.nn.softplus(-q_lo))
    big_branch = -q_hi + jnp.log1p(-0.5 * jnp.exp(-q_hi))  # log(e^-q - e^-2q / 2 + ...)
    return jnp.where(big, big_branch, small_branch)
  raise ValueError(f"unknown loss {name!r}; expected 'logistic' or 'exponential'")


def log_mean_loss(name: str, q: jax.Array) -> jax.Array:
  """log((1/n) sum_i l(q_i)), stable at any depth: its gradient is grad Loss / Loss."""
  return jax.nn.logsumexp(log_loss(name, q)) - jnp.log(q.shape[0])


def log_loss_derivative(name: str, q: jax.Array) -> jax.Array:
  """log(-l'(q)), finite at any margin (for weights known only up to scale, e.g. a direction)."""
  if name == "logistic":
    return -jax.nn.softplus(q)
  if name == "exponential":
    return -q
  raise ValueError(f"unknown loss {name!r}; expected 'logistic' or 'exponential'")


def get_loss(name: str):
  try:
    return {"logistic": logistic, "exponential": exponential}[name]
  except KeyError:
    raise ValueError(f"unknown loss {name!r}; expected 'logistic' or 'exponential'") from None


def mean_loss(name: str, q: jax.Array) -> jax.Array:
  """(1/n) sum_i l(q_i)."""
  return jnp.mean(get_loss(name)(q))
