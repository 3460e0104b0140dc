"""The stationarity map of the max-margin problem: lambda -> sum_i lambda_i grad_theta q_i(theta), and its Gram form.

sum_i c_i grad q_i is ONE vector-Jacobian product; the Gram matrix G_ij = <grad q_i, grad q_j> of the
per-example gradients and b = J theta come from a few batched matrix products of the per-example forward and
backprop signals (no per-example Jacobian). Pure; `jaxrecon.kkt` builds the KKT residuals on these.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxrecon import losses
from jaxrecon import nets


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
  return optax.tree.sub(params, g)


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


