"""Audit a model you hold, from a notebook: attack its weights, evaluate what comes out, KKT residuals, membership.

  params = jaxrecon.models.from_flax(variables)          # or models.load_torch("model.safetensors")
  rec = jaxrecon.audit.reconstruct(jax.random.key(0), params, n_train=500)
  nums = jaxrecon.audit.evaluate_images(rec, x_train, (28, 28, 1), mean=mean_image)   # if you hold the data
  rec.margin_score                                        # ranks candidates without any training data

The same maths as `scripts/attack.py` (one compiled sweep, the reference's evaluation with its baselines), without
a run folder: results come back as NamedTuples. Inputs live in the space the network was trained in (for the
reference protocol: images with the mean image subtracted); `mean` puts it back for the image evaluation.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon.attack import evaluate
from jaxrecon.attack.loss import AttackConfig, candidate_margins
from jaxrecon.attack.sweep import Hyper, SweepConfig, SweepResult, run_sweep


class Reconstruction(NamedTuple):
  """The pooled candidates of a sweep, best configurations first."""
  candidates: np.ndarray    # (P, d) candidates of every finite configuration, in the network's input space
  config_index: np.ndarray  # (P,) the configuration each came from
  margin_score: np.ndarray  # (P,) training-set-free ranking: -|log(q / typical margin)| (higher = likelier)
  multipliers: np.ndarray   # (P,) each candidate's lambda
  loss: np.ndarray          # (C,) final attack loss per configuration (NaN where it diverged)
  hyper: Hyper              # the swept values, one row per configuration
  sweep: SweepResult        # everything run_sweep returned (all candidates, history, timings)


def _n_outputs(params) -> int:
  return int(np.shape(params[-1]["w"])[1])


def binary_labels(params: nets.Params, y, log: Optional[Callable] = None) -> np.ndarray:
  """The labels a one-output net's margins need: +-1. PyTorch's habit {0, 1} is read as {-1, +1} and said so
  (through `log`, else a warning); anything else is refused. Class indices pass unchanged for K outputs.

  Args:
    params: the network (its output count decides binary or multiclass).
    y: the labels as given.
    log: where the one line about a mapping goes (None: warnings.warn).
  Returns:
    The labels to use.
  Raises:
    ValueError for one-output labels outside {-1, +1} and {0, 1}.
  """
  y = np.asarray(y)
  if _n_outputs(params) > 1:
    return y
  values = set(np.unique(y).tolist())
  if values <= {-1, 1}:
    return y
  if values <= {0, 1}:
    msg = "labels {0, 1} read as {-1, +1} (a one-output net's margin is y * Phi(x))"
    if log is None:
      import warnings  # noqa: PLC0415
      warnings.warn(msg, stacklevel=2)
    else:
      log(msg)
    return np.where(y > 0, 1, -1).astype(y.dtype if np.issubdtype(y.dtype, np.signedinteger) else np.float64)
  raise ValueError(f"labels of a one-output net must be -1 / +1 (or 0 / 1); got values {sorted(values)[:5]}")


def reconstruct(key: jax.Array, params: nets.Params, *, n_train: Optional[int] = None,
                attack: AttackConfig = AttackConfig(), sweep: SweepConfig = SweepConfig(),
                params_init: Optional[nets.Params] = None, pool_top: int = 0, radius_unit: float = 1.0,
                mesh=None, log: Optional[Callable] = None) -> Reconstruction:
  """Runs the Haim et al. attack on `params` (jaxrecon params: see `jaxrecon.models` for flax / torch models).

  n_train: the training-set size if known (the reference uses m = 2 n candidates per configuration; else set
  attack.m). A multiclass net (K outputs) switches the attack to its multiclass variant. The sweep's key is
  split from `key` as the attack job splits it, so `key = jax.random.key(sweep.seed)` reproduces
  `scripts/attack.py` on the same weights. radius_unit: the sphere prior's radii are in this unit.
  """
  if not attack.m and not n_train:
    raise ValueError("give n_train (the reference attacks with 2 n candidates) or attack.m")
  k = _n_outputs(params)
  if k > 1 and attack.variant != "multiclass":
    attack = dataclasses.replace(attack, variant="multiclass")
  if attack.variant == "multiclass" and attack.n_classes <= 1:
    attack = dataclasses.replace(attack, n_classes=k)
  key_sweep, key_attack = jax.random.split(key)
  hyper = sweep.hyper(key_sweep, radius_unit, attack.lr_lambda)
  d = int(np.shape(params[0]["w"])[0])
  res = run_sweep(key_attack, params, hyper, d, attack, params_init=params_init, n_train=n_train, mesh=mesh,
                  log=log)
  pool, pool_cfg, pool_idx = evaluate.pool_candidates(res.x, res.loss, pool_top)
  if pool.shape[0]:
    dtype = jnp.dtype(attack.dtype)
    cast = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
    q = np.asarray(candidate_margins(cast, jnp.asarray(pool, dtype), jnp.asarray(res.y_hat)[pool_idx]))
    score = evaluate.margin_score(q)
  else:
    score = np.zeros((0,))
  return Reconstruction(pool, pool_cfg, score, res.lam[pool_cfg, pool_idx], res.loss, hyper, res)


def evaluate_images(rec: Reconstruction, x_train, image_shape: tuple, *, mean=None, x_heldout=None,
                    half_res: Optional[bool] = None, window: int = 3, sigma: float = 1.5) -> evaluate.ImageNumbers:
  """The reference evaluation (NCC-nearest candidate, SSIM > 0.4) with min-max and clipped candidates, beside
  the baselines no attack needs: the mean image alone and `x_heldout` (images of the same distribution the net
  did not see; as many as the pool). x_train / x_heldout in the network's input space; mean (D,) added back."""
  if rec.candidates.shape[0] == 0:
    raise ValueError("every configuration diverged: nothing to evaluate (lower the x learning rates)")
  x_train = np.asarray(x_train)
  d = x_train.shape[1]
  mean = np.zeros(d) if mean is None else np.asarray(mean).reshape(d)
  return evaluate.image_numbers(x_train, rec.candidates, mean, tuple(image_shape), x_heldout, half_res=half_res,
                                window=window, sigma=sigma)


def evaluate_vectors(rec: Reconstruction, x_train, close_tol: float = 0.1) -> evaluate.VectorNumbers:
  """Distances both ways; a training point counts as reconstructed within close_tol x the data's RMS norm."""
  if rec.candidates.shape[0] == 0:
    raise ValueError("every configuration diverged: nothing to evaluate (lower the x learning rates)")
  x_train = np.asarray(x_train)
  return evaluate.vector_numbers(x_train, rec.candidates, close_tol, data_lib.rms_radius(x_train))


def kkt_residuals(params: nets.Params, x, y, *, loss: str = "logistic", relaxed: bool = False,
                  kink_tol: float = 1e-3) -> dict:
  """The KKT residuals of the max-margin problem at `params` for the training set (x, y): eps_rel (the paper's
  epsilon at theta), delta, support size, the certificate, and with `relaxed` the kink-neighbourhood residual.
  y: +-1 labels (binary) or class indices (multiclass). Computed in the dtype of params."""
  dtype = jnp.asarray(params[0]["w"]).dtype
  y = binary_labels(params, y)
  rep = kkt.report(params, jnp.asarray(x, dtype), jnp.asarray(y), kink_tol=kink_tol, relaxed=relaxed, loss=loss)
  return kkt.summarize(rep)


def membership_scores(params: nets.Params, x, margin: float) -> np.ndarray:
  """|Phi(x)| / margin for every row of x (2410.07632: training points of a 2-layer net at a KKT point score
  1, fresh points in high dimension score o(1)); margin: q_min if known, else |Phi| of one leaked member."""
  dtype = jnp.asarray(params[0]["w"]).dtype
  out = nets.apply(params, jnp.asarray(x, dtype))
  return np.asarray(jnp.abs(out.reshape(out.shape[0], -1)[:, 0]) / margin)
