"""The 2-layer ReLU nets of 2410.07632 (first-layer bias, no output bias): many trained in one compiled call,
and the KKT facts the provable attacks rest on.

Model: Phi(x) = sum_j v_j relu(w_j . x + b_j), params as in `nets`: ({'w': (d, k), 'b': (k,)}, {'w': (k, 1)}).
At a KKT point of the max-margin problem with margin m = min_i y_i Phi(x_i), support points sit exactly at
|Phi(x_i)| = m.
"""

from __future__ import annotations

import functools

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import train


def _two_layer(params):
  if len(params) != 2 or "b" not in params[0]:
    raise ValueError("the provable attacks need a 2-layer net with a first-layer bias (first_bias=True)")
  w = np.asarray(params[0]["w"], np.float64)  # (d, k)
  b = np.asarray(params[0]["b"], np.float64)  # (k,)
  v = np.asarray(params[1]["w"], np.float64)[:, 0]  # (k,)
  return w, b, v


def fit_many(key: jax.Array, x_SND: jax.Array, y_SN: jax.Array, config: train.TrainConfig,
             warmup: Optional[train.TrainConfig] = None):
  """Trains one 2-layer net (first-layer bias) per leading index of x and y, all in one compiled call.

  Returns (params stacked over S, margins q (S, N), log loss (S,)). Uses config's widths, init_scales, loss,
  optimizer, lr and steps; one subkey per set. `warmup` (optimizer, lr, steps) runs first, e.g. Adam to fit
  data that plain or loss-normalized GD from a small init fits slowly; `config` then takes over.
  """
  keys = jax.random.split(key, x_SND.shape[0])
  return _fit_many_fn(config, warmup, int(x_SND.shape[-1]))(keys, x_SND, y_SN)


@functools.lru_cache(maxsize=8)
def _fit_many_fn(config: train.TrainConfig, warmup: Optional[train.TrainConfig], d_in: int):
  """jit(vmap(train one net)) built once per (config, warmup, input size): a fresh jit per call recompiled
  every time."""
  cfg = nets.MLPConfig(d_in=d_in, widths=tuple(config.widths), n_out=1, init_scales=config.init_scales,
                       first_bias=True)
  phases = [c for c in (warmup, config) if c is not None and c.steps > 0]
  opts = [train.make_optimizer(c) for c in phases]
  steps = [train.make_train_step(c, o, norm) for c, (o, norm) in zip(phases, opts)]

  def one(k, x, y):
    params = nets.init(k, cfg, x.dtype)
    for c, (opt, _), step in zip(phases, opts, steps):
      state = train.TrainState(params, opt.init(params))
      state, _ = jax.lax.scan(lambda s, _, step=step: step(s, x, y), state, None, length=c.steps)
      params = state.params
    q = kkt.margins_of(params, x, y)
    return params, q, train.log_loss_fn(params, x, y, config.loss)

  return jax.jit(jax.vmap(one))


def init_many(key: jax.Array, d: int, n_sets: int, config: train.TrainConfig, dtype=None):
  """The initial parameters `fit_many` starts from (same subkeys), stacked over sets (dtype: config.dtype)."""
  dtype = jnp.dtype(dtype or config.dtype)
  cfg = nets.MLPConfig(d_in=d, widths=tuple(config.widths), n_out=1, init_scales=config.init_scales,
                       first_bias=True)
  keys = jax.random.split(key, n_sets)
  return jax.vmap(lambda k: nets.init(k, cfg, dtype))(keys)


def balancedness(params) -> np.ndarray:
  """Per neuron (v_j^2 - ||w_j||^2 - b_j^2) / (v_j^2 + ||w_j||^2 + b_j^2): 0 at a KKT point of (P)
  (and conserved by gradient flow from a balanced init), up to GD's discretization error."""
  w, b, v = _two_layer(params)
  in_sq = np.sum(w ** 2, axis=0) + b ** 2
  return (v ** 2 - in_sq) / np.maximum(v ** 2 + in_sq, np.finfo(np.float64).tiny)


def kink_identity_residual(params, x, y, lam) -> np.ndarray:
  """Per neuron |sum_{i active} lam_i y_i (1 + kink_j x_i)| / sum_{i active} lam_i |1 + kink_j x_i| (d = 1).

  Stationarity in w_j and b_j: w_j = v_j sum_{i active} lam_i y_i x_i and b_j = v_j sum_{i active} lam_i y_i;
  the kink kink_j = -b_j / w_j satisfies w_j kink_j + b_j = 0, hence sum_{i active} lam_i y_i (1 + kink_j x_i)
  = 0. (THEORY.md states sum lam_i y_i (x_i - kink_j) = 0; that sum is in fact (w_j^2 + b_j^2) / (v_j w_j),
  i.e. v_j / w_j when balanced -- see `kink_sum`, and the tests.) Neurons active on no point read 0.
  """
  w, b, v = _two_layer(params)
  if w.shape[0] != 1:
    raise ValueError("the kink identity is for univariate data (d = 1)")
  x = np.asarray(x, np.float64).reshape(-1)
  y = np.asarray(y, np.float64)
  lam = np.asarray(lam, np.float64)
  w = w[0]
  with np.errstate(divide="ignore", invalid="ignore"):
    kink = np.where(w != 0, -b / w, 0.0)
  active = (np.outer(x, w) + b[None, :]) > 0  # (n, k)
  terms = (lam * y)[:, None] * active * (1.0 + np.outer(x, kink))
  num = np.abs(np.sum(terms, axis=0))
  den = np.sum(np.abs(terms), axis=0)
  return np.where(den > 0, num / np.maximum(den, np.finfo(np.float64).tiny), 0.0)


def kink_sum(params, x, y, lam) -> np.ndarray:
  """Per neuron sum_{i active} lam_i y_i (x_i - kink_j), which a KKT point makes (w_j^2 + b_j^2) / (v_j w_j)."""
  w, b, v = _two_layer(params)
  x = np.asarray(x, np.float64).reshape(-1)
  w = w[0]
  with np.errstate(divide="ignore", invalid="ignore"):
    kink = np.where(w != 0, -b / w, 0.0)
  active = (np.outer(x, w) + b[None, :]) > 0
  return np.sum((np.asarray(lam) * np.asarray(y, np.float64))[:, None] * active
                * (x[:, None] - kink[None, :]), axis=0)


