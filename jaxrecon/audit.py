"""Audit a model you hold, from a notebook: attack its weights, evaluate what comes out, KKT residuals, membership.

  params = jaxrecon.models.from_flax(variables)          # or models.load_torch("model.safetensors")
  rec = jaxrecon.audit.reconstruct(jax.random.key(0), params, n_train=500)
  nums = jaxrecon.audit.evaluate_images(rec, x_train, (28, 28, 1), mean=mean_image)   # if you hold the data
  rep = jaxrecon.audit.recovery(jax.random.key(1), rec, x_train, x_heldout, image_shape=(28, 28, 1))
  rep["attack"]["n_credited"], rep["beats_every_null"]    # the recovery measure beside its nulls
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

from jaxrecon import credit as credit_lib
from jaxrecon import data as data_lib
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon.attack import evaluate
from jaxrecon.attack import protocols
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
  attack: AttackConfig      # what every configuration shared (its dtype is the attack's arithmetic)
  theta_scale: float        # the weights were multiplied by this before the attack (protocol's theta_norm)


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
                protocol: protocols.ProtocolName = protocols.DEFAULT, attack: Optional[AttackConfig] = None,
                sweep: Optional[SweepConfig] = None, theta_norm: Optional[float] = None,
                params_init: Optional[nets.Params] = None, pool_top: int = 0, radius_unit: float = 1.0,
                mesh=None, log: Optional[Callable] = None) -> Reconstruction:
  """Runs the Haim et al. attack on `params` (jaxrecon params: see `jaxrecon.models` for flax / torch models).

  A multiclass net (K outputs) switches the attack to its multiclass variant. The sweep's key is split from
  `key` as the attack job splits it, so `key = jax.random.key(sweep.seed)` reproduces `scripts/attack.py` on
  the same weights.

  Args:
    key: PRNG key of the sweep's draws and the candidates' init.
    params: the attacked network (a bias-free ReLU MLP, optionally with a first-layer bias).
    n_train: the training-set size if known (the reference uses m = 2 n candidates per configuration); else
      set attack.m.
    protocol: 'fast' (the default of every command) or 'reference' (`jaxrecon.attack.protocols`): the attack,
      the sweep and the weights' norm that `attack`, `sweep` and `theta_norm` do not override.
    attack: what every configuration shares (steps, optimizer, prior, dtype, layer weights, ...).
    sweep: the configurations (random draws from ranges, or a grid), all run in one compiled call.
    theta_norm: rescale the weights to this norm before the attack (0 = as trained; a homogeneous net's
      candidates do not move, its multipliers do).
    params_init: the initialization, for `attack.match_init` (the attacker knows it).
    pool_top: pool the candidates of this many configurations with the lowest final attack loss (0 = all).
    radius_unit: the unit of the sphere prior's radii.
    mesh: a device mesh to shard configurations over (None = every visible device).
    log: progress lines (None = silent).
  Returns:
    A `Reconstruction`: the pooled candidates with their configuration, multipliers and training-set-free
    score, the per-configuration losses, the swept values and the raw sweep result.
  """
  preset = protocols.get(protocol)
  attack = preset.attack if attack is None else attack
  sweep = preset.sweep if sweep is None else sweep
  theta_norm = preset.theta_norm if theta_norm is None else theta_norm
  if not attack.m and not n_train:
    raise ValueError("give n_train (the reference attacks with 2 n candidates) or attack.m")
  scale = theta_norm / float(nets.param_norm(params)) if theta_norm > 0 else 1.0
  if scale != 1.0:
    params = nets.scale_params(params, scale)
    params_init = None if params_init is None else nets.scale_params(params_init, scale)
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
  return Reconstruction(pool, pool_cfg, score, res.lam[pool_cfg, pool_idx], res.loss, hyper, res, attack, scale)


def evaluate_images(rec: Reconstruction, x_train, image_shape: tuple, *, mean=None, x_heldout=None,
                    half_res: Optional[bool] = None, window: int = 3, sigma: float = 1.5) -> evaluate.ImageNumbers:
  """The reference evaluation (NCC-nearest candidate, SSIM > 0.4) with min-max and clipped candidates, beside
  the baselines no attack needs.

  Args:
    rec: what `reconstruct` returned.
    x_train: (N, D) the training images, in the network's input space.
    image_shape: (H, W, C).
    mean: (D,) added back before the SSIM (the reference subtracts the mean image); None = zeros.
    x_heldout: images of the same distribution the net did not see (the held-out baseline; as many as the pool).
    half_res, window, sigma: the reference's NCC resolution and SSIM window.
  Returns:
    `evaluate.ImageNumbers`: the min-max and clipped evaluations, each with its baselines.
  """
  if rec.candidates.shape[0] == 0:
    raise ValueError("every configuration diverged: nothing to evaluate (lower the x learning rates)")
  x_train = np.asarray(x_train)
  d = x_train.shape[1]
  mean = np.zeros(d) if mean is None else np.asarray(mean).reshape(d)
  return evaluate.image_numbers(x_train, rec.candidates, mean, tuple(image_shape), x_heldout, half_res=half_res,
                                window=window, sigma=sigma)


def evaluate_vectors(rec: Reconstruction, x_train, close_tol: float = 0.1) -> evaluate.VectorNumbers:
  """Distances both ways for vector data.

  Args:
    rec: what `reconstruct` returned.
    x_train: (N, D) the training points.
    close_tol: a training point counts as reconstructed within close_tol x the data's RMS norm.
  Returns:
    `evaluate.VectorNumbers` (distances, the count within close_tol, best-five and median distances).
  """
  if rec.candidates.shape[0] == 0:
    raise ValueError("every configuration diverged: nothing to evaluate (lower the x learning rates)")
  x_train = np.asarray(x_train)
  return evaluate.vector_numbers(x_train, rec.candidates, close_tol, data_lib.rms_radius(x_train))


def kkt_residuals(params: nets.Params, x, y, *, loss: str = "logistic", relaxed: bool = False,
                  kink_tol: float = 1e-3) -> dict:
  """The KKT residuals of the max-margin problem at `params` for the training set (x, y).

  Args:
    params: the network; its dtype is the computation's.
    x: (N, D) the training points; y: +-1 labels or {0, 1} (binary: mapped with a warning) or class indices.
    loss: the training loss (logistic | exponential), for the certificate.
    relaxed: also solve the kink-neighbourhood residual (an upper bound when its pairs are capped).
    kink_tol: relative |w.x| below which a pair counts as at its kink.
  Returns:
    A dict: eps_rel (the paper's epsilon at theta), delta, support size, q_min, the certificate, and the
    relaxed fields.
  """
  dtype = jnp.asarray(params[0]["w"]).dtype
  y = binary_labels(params, y)
  rep = kkt.report(params, jnp.asarray(x, dtype), jnp.asarray(y), kink_tol=kink_tol, relaxed=relaxed, loss=loss)
  return kkt.summarize(rep)


def membership_scores(params: nets.Params, x, margin: float) -> np.ndarray:
  """The membership score of 2410.07632 (training points of a 2-layer net at a KKT point score 1, fresh points in
  high dimension o(1)).

  Args:
    params: the network.
    x: (M, D) the points to score.
    margin: q_min if known, else |Phi| of one leaked member.
  Returns:
    (M,) |Phi(x)| / margin.
  """
  dtype = jnp.asarray(params[0]["w"]).dtype
  out = nets.apply(params, jnp.asarray(x, dtype))
  return np.asarray(jnp.abs(out.reshape(out.shape[0], -1)[:, 0]) / margin)


def recovery(key: jax.Array, rec: Reconstruction, x_train, x_heldout, *, x_null=None,
             image_shape: Optional[tuple] = None, units: str = "config") -> dict:
  """The recovery measure (`jaxrecon.credit`) of the candidates, beside every null's count.

  Args:
    key: PRNG key of the null pools and the positive control.
    rec: what `reconstruct` returned.
    x_train: (N, D) the training points, in the network's input space.
    x_heldout: (H, D) points of the same distribution the net did not see: the reference competitors.
    x_null: further held-out points for the held-out null (None: it is drawn from x_heldout's own second half,
      and the first half stays the reference).
    image_shape: (H, W, C) for images (NCC similarity, per channel), None for vectors (cosine).
    units: 'config' (intervals over the sweep's configurations) or 'none'.
  Returns:
    `credit.report`'s dict: attack {n_credited, candidates_credited, ...}, nulls {name: {n_credited_max, ...}},
    beats_every_null, positive_control, per_unit (with units='config').
  """
  x_heldout = np.asarray(x_heldout)
  if x_null is None:
    half = x_heldout.shape[0] // 2
    x_heldout, x_null = x_heldout[:half], x_heldout[half:]
  return credit_lib.report(key, rec.candidates, x_train, x_heldout, x_null=x_null,
                           rule=credit_lib.rule_for(image_shape),
                           units=rec.config_index if units == "config" else None)
