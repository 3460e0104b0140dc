"""SUMO (arXiv 2505.24749) as an optax transformation: a low-rank first moment, orthogonalized exactly.

For each matrix W (m x n after orientation, m >= n; a wider matrix is worked on as its transpose) the state
is an orthonormal basis Q (m x r), the moment M (r x n) in that basis and the previous update norm:

    if step % K == 0:  Q_new = top-r left singular basis of G (exact SVD, or randomized: Gaussian sketch,
                       power iterations, QR);  M = (Q_new^T Q_old) M  (moment transport);  Q = Q_new
    G_hat = Q^T G;  M = mu M + G_hat;  O = U V^T with U S V^T = svd(M)  (singular values below
                    `rank_tol` x the largest are dropped, so a rank-deficient M adds no arbitrary directions)
    if ||O|| > gamma ||O_prev||: O *= gamma ||O_prev|| / ||O||   (norm-growth limiter, optional)
    update = (G - Q G_hat) + scale Q O,  scale = c sqrt(max(m, n))

followed (in `sumo`) by weight decay and the learning rate: W <- W - eta (update + lambda W).
Choices we made where the paper leaves room, all options: momentum in the paper's sum form (M = mu M + G_hat,
no (1 - mu), no Nesterov); the out-of-subspace gradient G - Q G_hat added unscaled (`residual=True`); the shape
factor c sqrt(max(m, n)) with c = 0.2 (Moonlight / optax Muon's consistent RMS); the limiter on the Frobenius
norm of O; at step 0 the moment is zero so the transport is a no-op. N-D parameters are treated as batches of
matrices through `MuonDimensionNumbers`-style (reduction, output) axes, like `optax.contrib.muon`.
State per matrix: Q (m r) + M (r n) = (m + n) r numbers (plus one scalar), against 2 m n for Adam.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Literal, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers as DimensionNumbers

Projector = Literal["randomized", "exact"]
Orthogonalizer = Literal["svd", "newton_schulz"]


class ScaleBySumoState(NamedTuple):
  count: jax.Array   # int32 step counter
  key: jax.Array     # raw uint32 data of the randomized projector's PRNG key (checkpointable as an array)
  basis: Any         # per matrix leaf Q (B, m, r); MaskedNode elsewhere
  moment: Any        # per matrix leaf M (B, r, n)
  prev_norm: Any     # per matrix leaf ||O_prev|| (B,)


def _axes(x, dim_nums: DimensionNumbers):
  red = (dim_nums.reduction_axis,) if isinstance(dim_nums.reduction_axis, int) else dim_nums.reduction_axis
  out = (dim_nums.output_axis,) if isinstance(dim_nums.output_axis, int) else dim_nums.output_axis
  red = tuple(a % x.ndim for a in red)
  out = tuple(a % x.ndim for a in out)
  if set(red) & set(out):
    raise ValueError(f"reduction and output axes overlap: {dim_nums} for shape {x.shape}")
  return red, out


class _Layout(NamedTuple):
  """How a leaf becomes a batch of (m, n) matrices with m >= n, and back."""
  to_mat: Callable
  from_mat: Callable
  m: int
  n: int
  batch: int


def _layout(shape, dtype, dim_nums: DimensionNumbers) -> _Layout:
  x = jax.ShapeDtypeStruct(shape, dtype)
  if len(shape) < 2:
    raise ValueError(f"SUMO needs parameters of rank >= 2, got shape {shape}")
  red, out = _axes(x, dim_nums)
  batch_axes = tuple(sorted(set(range(len(shape))) - set(red) - set(out)))
  perm = batch_axes + red + out
  inv = tuple(sorted(range(len(shape)), key=lambda i: perm[i]))
  b = math.prod(shape[a] for a in batch_axes)
  a_dim = math.prod(shape[a] for a in red)
  o_dim = math.prod(shape[a] for a in out)
  unflat = tuple(shape[a] for a in perm)
  flip = a_dim < o_dim

  def to_mat(v):
    v = v.transpose(perm).reshape((b, a_dim, o_dim))
    return jnp.swapaxes(v, 1, 2) if flip else v

  def from_mat(v):
    v = jnp.swapaxes(v, 1, 2) if flip else v
    return v.reshape(unflat).transpose(inv)
  return _Layout(to_mat, from_mat, max(a_dim, o_dim), min(a_dim, o_dim), b)


def orthogonalize(m_RN: jax.Array, rank_tol: float = 1e-6) -> jax.Array:
  """U V^T of svd(M), keeping only singular values above rank_tol x the largest (exact polar factor)."""
  u, s, vt = jnp.linalg.svd(m_RN, full_matrices=False)
  keep = (s > rank_tol * jnp.max(s, axis=-1, keepdims=True)).astype(m_RN.dtype)
  return (u * keep[..., None, :]) @ vt


# Muon's quintic Newton-Schulz coefficients (Jordan et al. 2024; optax.contrib.muon's default).
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(m_RN: jax.Array, steps: int = 5, coeffs=NS_COEFFS, eps: float = 1e-8) -> jax.Array:
  """Muon's approximate polar factor of M: from X = M / ||M||_F (the wide orientation), `steps` times
  X <- a X + (b A + c A^2) X with A = X X^T. Not U V^T: singular values land in roughly [0.7, 1.2] and those
  far below the largest stay small (the ablation's point: `orthogonalize` is exact)."""
  x = m_RN
  tall = x.shape[-2] > x.shape[-1]
  if tall:
    x = jnp.swapaxes(x, -1, -2)
  x = x / (jnp.sqrt(jnp.sum(jnp.square(x), axis=(-2, -1), keepdims=True)) + eps)
  a, b, c = coeffs
  for _ in range(steps):
    gram = x @ jnp.swapaxes(x, -1, -2)
    x = a * x + (b * gram + c * gram @ gram) @ x
  return jnp.swapaxes(x, -1, -2) if tall else x


def condition_numbers(moment_RN: jax.Array) -> jax.Array:
  """s_max / s_min of each moment matrix (the quantity SUMO's error bound for Newton-Schulz depends on);
  inf for a rank-deficient one."""
  s = jnp.linalg.svd(moment_RN, compute_uv=False)
  return s[..., 0] / s[..., -1]


def transport(q_old: jax.Array, q_new: jax.Array, moment: jax.Array) -> jax.Array:
  """The moment expressed in the new basis: (Q_new^T Q_old) M."""
  return jnp.swapaxes(q_new, -1, -2) @ q_old @ moment


def exact_projector(g_MN: jax.Array, rank: int) -> jax.Array:
  """Top-`rank` left singular vectors of G (m x r)."""
  u, _, _ = jnp.linalg.svd(g_MN, full_matrices=False)
  return u[..., :, :rank]


def randomized_projector(key: jax.Array, g_MN: jax.Array, rank: int, oversample: int = 5,
                         power_iters: int = 1) -> jax.Array:
  """An orthonormal basis of G's top-`rank` left singular subspace by a randomized SVD (Halko et al.)."""
  n = g_MN.shape[-1]
  k = min(rank + oversample, n)
  omega = jax.random.normal(key, g_MN.shape[:-2] + (n, k), g_MN.dtype)
  y = g_MN @ omega
  for _ in range(power_iters):
    y, _ = jnp.linalg.qr(y)
    y = g_MN @ (jnp.swapaxes(g_MN, -1, -2) @ y)
  q, _ = jnp.linalg.qr(y)
  small = jnp.swapaxes(q, -1, -2) @ g_MN  # (k, n)
  u, _, _ = jnp.linalg.svd(small, full_matrices=False)
  return q @ u[..., :, :rank]


def _key_data(key: Optional[jax.Array]) -> jax.Array:
  """Raw uint32 key data of a typed or raw PRNG key (a placeholder key for the exact projector)."""
  if key is None:
    key = jax.random.key(0)  # never drawn from: the exact projector is deterministic
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key)
  return jnp.asarray(key, jnp.uint32)


class _Settings(NamedTuple):
  """scale_by_sumo's hyperparameters that act on one leaf."""
  rank_tol: float
  momentum: float
  growth_limit: Optional[float]
  shape_scale: Optional[float]
  residual: bool
  projector: str
  oversample: int
  power_iters: int
  transport_moment: bool
  orthogonalizer: str
  ns_steps: int


def _leaf_update(hp: _Settings, g, l: _Layout, q, mom, prev, key, refresh):
  """One leaf's SUMO step: (direction, basis, moment, norm of the orthogonalized moment)."""
  gm = l.to_mat(g)  # (B, m, n)
  r = q.shape[-1]

  def refreshed(q=q, mom=mom):
    if hp.projector == "exact":
      q_new = exact_projector(gm, r)
    else:
      q_new = randomized_projector(key, gm, r, hp.oversample, hp.power_iters)
    m_new = transport(q, q_new, mom) if hp.transport_moment else mom
    return q_new, m_new
  q, mom = jax.lax.cond(refresh, refreshed, lambda q=q, mom=mom: (q, mom))
  g_hat = jnp.swapaxes(q, -1, -2) @ gm  # (B, r, n)
  mom = hp.momentum * mom + g_hat
  o = orthogonalize(mom, hp.rank_tol) if hp.orthogonalizer == "svd" else newton_schulz(mom, hp.ns_steps)
  norm = jnp.sqrt(jnp.sum(jnp.square(o), axis=(-2, -1)))
  if hp.growth_limit is not None:
    cap = hp.growth_limit * prev
    factor = jnp.where((prev > 0) & (norm > cap), cap / jnp.maximum(norm, 1e-30), 1.0)
    o = o * factor[:, None, None]
    norm = norm * factor
  scale = 1.0 if hp.shape_scale is None else hp.shape_scale * math.sqrt(l.m)
  u = scale * (q @ o)
  if hp.residual:
    u = u + (gm - q @ g_hat)
  return l.from_mat(u).astype(g.dtype), q, mom, norm


def _layouts(params, weight_dimension_numbers):
  """Each leaf's matrix layout from one DimensionNumbers, a function of the leaf, or the default (0, 1)."""
  if callable(weight_dimension_numbers):  # a function of one leaf
    dn = jax.tree_util.tree_map(weight_dimension_numbers, params)
  else:
    dn = jax.tree_util.tree_map(lambda _: weight_dimension_numbers or DimensionNumbers(), params)
  return jax.tree_util.tree_map(lambda p, d: _layout(p.shape, p.dtype, d), params, dn,
                                is_leaf=lambda x: isinstance(x, DimensionNumbers))


def scale_by_sumo(rank: int = 8, momentum: float = 0.95, refresh_every: int = 200,
                  growth_limit: Optional[float] = 1.1, projector: Projector = "randomized",
                  power_iters: int = 1, oversample: int = 5, residual: bool = True,
                  shape_scale: Optional[float] = 0.2, transport_moment: bool = True,
                  rank_tol: float = 1e-6, key: Optional[jax.Array] = None,
                  weight_dimension_numbers: Union[DimensionNumbers, Callable, None] = None,
                  orthogonalizer: Orthogonalizer = "svd", ns_steps: int = 5) -> optax.GradientTransformation:
  """The SUMO direction for every leaf (all must be matrices, or batches of them via dimension numbers).

  rank: r (capped at the smaller side). refresh_every: K. growth_limit: gamma (None = no limiter).
  projector: 'randomized' | 'exact'. shape_scale: c in c sqrt(max(m, n)) (None = 1). key: the randomized
  projector's PRNG key, as optax takes keys (`optax.add_noise`): needed by `init` when projector='randomized';
  the state keeps its raw uint32 data, so a state can be checkpointed and restored like any array tree.
  weight_dimension_numbers: one DimensionNumbers(reduction_axis, output_axis) for every leaf, or a function
  of a leaf returning its DimensionNumbers (other axes are batch axes); default (0, 1).
  orthogonalizer: 'svd' (the paper's exact U V^T) | 'newton_schulz' (Muon's `ns_steps` quintic steps in the
  same subspace: the ablation of the paper's central claim).
  """
  if orthogonalizer not in ("svd", "newton_schulz"):
    raise ValueError(f"unknown orthogonalizer {orthogonalizer!r}; expected 'svd' or 'newton_schulz'")
  if projector not in ("randomized", "exact"):
    raise ValueError(f"unknown projector {projector!r}; expected 'randomized' or 'exact'")
  if rank < 1 or refresh_every < 1:
    raise ValueError("rank and refresh_every must be >= 1")

  layouts = functools.partial(_layouts, weight_dimension_numbers=weight_dimension_numbers)

  def init_fn(params):
    if projector == "randomized" and key is None:
      raise ValueError("scale_by_sumo with the randomized projector needs a PRNG key: "
                       "scale_by_sumo(..., key=jax.random.key(0)) (or projector='exact')")
    lay = layouts(params)

    def init_leaf(p, l):
      r = min(rank, l.n)
      q = jnp.zeros((l.batch, l.m, r), p.dtype)
      return q, jnp.zeros((l.batch, r, l.n), p.dtype), jnp.zeros((l.batch,), p.dtype)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    lays = treedef.flatten_up_to(lay)
    out = [init_leaf(p, l) for p, l in zip(leaves, lays)]
    unf = lambda i: jax.tree_util.tree_unflatten(treedef, [o[i] for o in out])
    return ScaleBySumoState(jnp.zeros((), jnp.int32), _key_data(key), unf(0), unf(1), unf(2))

  hp = _Settings(rank_tol, momentum, growth_limit, shape_scale, residual, projector, oversample, power_iters,
                 transport_moment, orthogonalizer, ns_steps)

  def update_fn(updates, state, params=None):
    del params
    lay = layouts(updates)
    leaves, treedef = jax.tree_util.tree_flatten(updates)
    lays = treedef.flatten_up_to(lay)
    qs = treedef.flatten_up_to(state.basis)
    ms = treedef.flatten_up_to(state.moment)
    norms = treedef.flatten_up_to(state.prev_norm)
    key, sub = jax.random.split(jax.random.wrap_key_data(state.key))
    keys = jax.random.split(sub, max(len(leaves), 1))
    refresh = (state.count % refresh_every) == 0
    out = [_leaf_update(hp, g, l, q, mom, prev, keys[i], refresh)
           for i, (g, l, q, mom, prev) in enumerate(zip(leaves, lays, qs, ms, norms))]
    unf = lambda j: jax.tree_util.tree_unflatten(treedef, [o[j] for o in out])
    return unf(0), ScaleBySumoState(state.count + 1, jax.random.key_data(key), unf(1), unf(2), unf(3))

  return optax.GradientTransformation(init_fn, update_fn)


def sumo(learning_rate: optax.ScalarOrSchedule, rank: int = 8, momentum: float = 0.95,
         refresh_every: int = 200, growth_limit: Optional[float] = 1.1, projector: Projector = "randomized",
         weight_decay: float = 0.0, shape_scale: Optional[float] = 0.2, residual: bool = True,
         transport_moment: bool = True, key: Optional[jax.Array] = None,
         adam_learning_rate: Optional[optax.ScalarOrSchedule] = None, adam_b1: float = 0.9,
         adam_b2: float = 0.999, adam_eps: float = 1e-8, adam_weight_decay: float = 0.0,
         param_labels: Union[Any, Callable, None] = None,
         weight_dimension_numbers: Union[DimensionNumbers, Callable, None] = None,
         orthogonalizer: Orthogonalizer = "svd") -> optax.GradientTransformation:
  """SUMO for matrices, AdamW for everything else, in the shape of `optax.contrib.muon`.

  Args:
    learning_rate: SUMO's learning rate (a float or an optax schedule).
    rank, momentum, refresh_every, growth_limit, projector, shape_scale, residual, transport_moment,
      weight_dimension_numbers, orthogonalizer: as `scale_by_sumo`.
    weight_decay: decoupled weight decay on the SUMO leaves.
    key: the randomized projector's PRNG key (needed by `init` when projector='randomized').
    adam_learning_rate, adam_b1, adam_b2, adam_eps, adam_weight_decay: AdamW's, for the other leaves
      (learning rate default: SUMO's).
    param_labels: a tree or a callable of params giving 'sumo' / 'adam' per leaf (send embeddings and output
      heads to AdamW); default: every leaf of rank 2 goes to SUMO (rank >= 2 when `weight_dimension_numbers`
      is given).
  Returns:
    An `optax.GradientTransformation` (`optax.multi_transform` of the two).
  """
  if adam_learning_rate is None:
    adam_learning_rate = learning_rate

  def labels(params):
    if param_labels is not None:
      return param_labels(params) if callable(param_labels) else param_labels
    if weight_dimension_numbers is not None:  # N-D leaves are batches of matrices
      return jax.tree_util.tree_map(lambda p: "sumo" if p.ndim >= 2 else "adam", params)
    return jax.tree_util.tree_map(lambda p: "sumo" if p.ndim == 2 else "adam", params)

  matrix = optax.chain(
      scale_by_sumo(rank=rank, momentum=momentum, refresh_every=refresh_every, growth_limit=growth_limit,
                    projector=projector, residual=residual, shape_scale=shape_scale,
                    transport_moment=transport_moment, key=key,
                    weight_dimension_numbers=weight_dimension_numbers, orthogonalizer=orthogonalizer),
      optax.add_decayed_weights(weight_decay),
      optax.scale_by_learning_rate(learning_rate))
  other = optax.adamw(adam_learning_rate, b1=adam_b1, b2=adam_b2, eps=adam_eps,
                      weight_decay=adam_weight_decay)
  return optax.partition({"sumo": matrix, "adam": other}, labels)
