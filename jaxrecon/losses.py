"""Margins and margin losses, stable from q = -1e4 to 1e4 in float32 and float64.

Binary: q_i = y_i Phi(x_i) with y_i in {-1, +1}. Multiclass: q_i = Phi_{y_i}(x_i) - max_{j != y_i}
Phi_j(x_i) with integer y_i. Both are L-homogeneous in theta, like Phi.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Optional

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


def _logistic_log(q: jax.Array) -> jax.Array:
  big = q > 30.0
  q_lo = jnp.where(big, 0.0, q)   # double-where: no NaN gradient from the branch not taken
  q_hi = jnp.where(big, q, 31.0)
  small_branch = jnp.log(jax.nn.softplus(-q_lo))
  big_branch = -q_hi + jnp.log1p(-0.5 * jnp.exp(-q_hi))  # log(e^-q - e^-2q / 2 + ...)
  return jnp.where(big, big_branch, small_branch)


def _exponential_neg_derivative(q: jax.Array) -> jax.Array:
  return jnp.exp(jnp.minimum(-q, _EXP_LINEAR_FROM.get(jnp.dtype(q.dtype), 60.0)))


class Loss(NamedTuple):
  """A margin loss l(q), decreasing to 0 as q grows (the implicit bias toward the max-margin direction needs
  that), as its four faces: l(q); -l'(q) >= 0 (the samples' weights in -grad Loss); log l(q) and
  log(-l'(q)), finite at any margin where l itself underflows. Each is elementwise and jit-able. A face left
  None is derived from `value` with jax (then it is only as stable as `value`)."""
  value: Callable[[jax.Array], jax.Array]
  neg_derivative: Optional[Callable[[jax.Array], jax.Array]] = None
  log_value: Optional[Callable[[jax.Array], jax.Array]] = None
  log_neg_derivative: Optional[Callable[[jax.Array], jax.Array]] = None


# The loss registry: the one place a loss is named. Training (`TrainConfig.loss`, `--loss`), the KKT
# certificate, the KKT job's loss column and weight decay's multipliers all look a loss up here; a new loss
# is one entry (tests/losses_test.py adds one and trains, checks KKT and attacks with it).
LOSSES: dict = {
    "logistic": Loss(logistic, lambda q: jax.nn.sigmoid(-q), _logistic_log, lambda q: -jax.nn.softplus(q)),
    "exponential": Loss(exponential, _exponential_neg_derivative, lambda q: -q, lambda q: -q),
}
LossName = Literal["logistic", "exponential"]


def get(name: str) -> Loss:
  """The registered loss `name`, its missing faces derived; a ValueError naming the choices otherwise."""
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(repr(k) for k in LOSSES)}")
  f = LOSSES[name]
  neg_d = f.neg_derivative or jnp.vectorize(jax.grad(lambda t: -f.value(t)))
  return Loss(f.value, neg_d, f.log_value or (lambda q: jnp.log(f.value(q))),
              f.log_neg_derivative or (lambda q: jnp.log(neg_d(q))))


def loss_derivative(name: str, q: jax.Array) -> jax.Array:
  """-l'(q) >= 0: the weight each sample gets in -grad Loss = sum_i -l'(q_i) grad q_i."""
  return get(name).neg_derivative(q)


def log_loss(name: str, q: jax.Array) -> jax.Array:
  """log l(q_i), elementwise, finite for any margin (l(q) itself underflows to 0 past q ~ 745 in float64)."""
  return get(name).log_value(q)


def log_mean_loss(name: str, q: jax.Array) -> jax.Array:
  """log((1/n) sum_i l(q_i)), stable at any depth: its gradient is grad Loss / Loss."""
  return jax.nn.logsumexp(log_loss(name, q)) - jnp.log(q.shape[0])


def log_loss_derivative(name: str, q: jax.Array) -> jax.Array:
  """log(-l'(q)), finite at any margin (for weights known only up to scale, e.g. a direction)."""
  return get(name).log_neg_derivative(q)


def get_loss(name: str):
  """l itself, by name."""
  return get(name).value


def mean_loss(name: str, q: jax.Array) -> jax.Array:
  """(1/n) sum_i l(q_i)."""
  return jnp.mean(get_loss(name)(q))
