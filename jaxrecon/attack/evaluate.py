"""Evaluation of reconstructions as in Haim et al. 2022, plus rankings that need no training set.

Images are rows of x (N, H*W*C) in the training set's (mean-subtracted) space; `image_shape` is (H, W, C).
The reference protocol: for each training image the nearest candidate by normalized cross-correlation (NCC;
at half resolution for CIFAR), then SSIM between the training image and the candidate after adding the mean
back and min-max scaling the candidate to [0, 1]; pairs sorted by SSIM; SSIM > 0.4 is a good reconstruction.

SSIM follows the reference's call `kornia.metrics.ssim(x, y, window_size=3)` averaged over the map: a
normalized Gaussian window (size 3, sigma 1.5 by default), reflection padding of window // 2 ('same' size, the
border pixel not repeated), C1 = 0.01^2, C2 = 0.03^2 for data range 1, and 1e-12 added to the denominator.
`padding='zero'` (with eps 0) gives the pytorch-ssim variant earlier versions of jaxrecon used.

Colour images (CIFAR) are matched as the reference does: both sets downsampled by torch's bicubic
interpolation at scale 1/2 (Keys' cubic with a = -0.75, half-pixel centres, edge indices clamped, no
antialiasing), then NCC with each channel standardized on its own (the reference's per-channel `normalize_batch`
then L2 distance, whose nearest neighbour is the one with the largest SUM of per-channel correlations).
"""

from __future__ import annotations

import functools

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import stats

GOOD_SSIM = 0.4


def gaussian_window(size: int = 3, sigma: float = 1.5, dtype=jnp.float32) -> jax.Array:
  """The 1-D normalized Gaussian of the reference (the 2-D window is its outer product)."""
  t = jnp.arange(size, dtype=dtype) - (size // 2)
  g = jnp.exp(-t ** 2 / (2.0 * sigma ** 2))
  return g / jnp.sum(g)


SSIM_PADDINGS = ("reflect", "zero")
KORNIA_EPS = 1e-12


def _filter(img_HWC: jax.Array, g: jax.Array, padding: str = "reflect") -> jax.Array:
  """Separable 'same' correlation sum_{a,b} g_a g_b img[h+a-r, w+b-r], padded by reflection or zeros."""
  r = g.shape[0] // 2
  h, w = img_HWC.shape[0], img_HWC.shape[1]
  p = jnp.pad(img_HWC, ((r, r), (r, r), (0, 0)), mode="reflect" if padding == "reflect" else "constant")
  rows = sum(g[a] * p[a:a + h] for a in range(g.shape[0]))
  return sum(g[b] * rows[:, b:b + w] for b in range(g.shape[0]))


def ssim(a_HWC: jax.Array, b_HWC: jax.Array, window: int = 3, sigma: float = 1.5,
         data_range: float = 1.0, padding: str = "reflect", eps: Optional[float] = None) -> jax.Array:
  """Mean SSIM of two images (H, W, C); vmap over pairs.

  padding 'reflect' with eps 1e-12 is the reference's kornia SSIM; 'zero' (eps 0 by default) is pytorch-ssim.
  """
  if padding not in SSIM_PADDINGS:
    raise ValueError(f"unknown SSIM padding {padding!r}; expected one of {SSIM_PADDINGS}")
  if eps is None:
    eps = KORNIA_EPS if padding == "reflect" else 0.0
  g = gaussian_window(window, sigma, a_HWC.dtype)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  f = lambda t: _filter(t, g, padding)
  mu_a, mu_b = f(a_HWC), f(b_HWC)
  s_aa = f(a_HWC * a_HWC) - mu_a ** 2
  s_bb = f(b_HWC * b_HWC) - mu_b ** 2
  s_ab = f(a_HWC * b_HWC) - mu_a * mu_b
  num = (2 * mu_a * mu_b + c1) * (2 * s_ab + c2)
  den = (mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2)
  return jnp.mean(num / (den + eps))


def minmax(x_ND: jax.Array) -> jax.Array:
  """Each row scaled to [0, 1] (a constant row maps to 0)."""
  lo = jnp.min(x_ND, axis=-1, keepdims=True)
  hi = jnp.max(x_ND, axis=-1, keepdims=True)
  return (x_ND - lo) / jnp.where(hi > lo, hi - lo, 1.0)


# torch's bicubic kernel (a = -0.75) at the fractional offset 0.5 that scale 1/2 with half-pixel centres gives:
# output i reads inputs 2i - 1, 2i, 2i + 1, 2i + 2 (clamped to the image).
_HALF_BICUBIC = (-0.09375, 0.59375, 0.59375, -0.09375)


def _half_axis(img: jax.Array, axis: int) -> jax.Array:
  n = img.shape[axis]
  i = np.arange(n // 2)
  return sum(wt * jnp.take(img, np.clip(2 * i + off, 0, n - 1), axis=axis)
             for wt, off in zip(_HALF_BICUBIC, (-1, 0, 1, 2)))


def half_resolution(x_ND: jax.Array, image_shape: tuple) -> jax.Array:
  """torch.nn.functional.interpolate(scale_factor=1/2, mode='bicubic') of flattened (H, W, C) images."""
  h, w, c = image_shape
  img = x_ND.reshape((-1, h, w, c))
  img = _half_axis(_half_axis(img, 1), 2)
  return img.reshape((x_ND.shape[0], -1))


def ncc_matrix(a_ND: jax.Array, b_MD: jax.Array, channels: int = 1) -> jax.Array:
  """(N, M) normalized cross-correlation, the mean over channels of each channel's correlation.

  Rows are flattened (H, W, C) images with C = `channels` (1: the cosine of the mean-centred rows).
  """
  def unit(v):
    v = v.reshape(v.shape[0], -1, channels)
    v = v - jnp.mean(v, axis=1, keepdims=True)
    v = v / jnp.maximum(jnp.linalg.norm(v, axis=1, keepdims=True), jnp.finfo(v.dtype).tiny)
    return v.reshape(v.shape[0], -1)
  return (unit(a_ND) @ unit(b_MD).T) / channels


class Evaluation(NamedTuple):
  """Reference-style evaluation of a candidate pool against a training set."""
  ssim_train: np.ndarray      # (N,) SSIM of each training image with its NCC-nearest candidate
  nearest_cand: np.ndarray    # (N,) index into the pool of that candidate
  ssim_cand: np.ndarray       # (P,) SSIM of each candidate with ITS NCC-nearest training image
  nearest_train: np.ndarray   # (P,) index of that training image
  dist_train: np.ndarray      # (N,) L2 distance of each training point to its closest candidate
  n_good: int                 # training images with ssim_train > threshold
  mean_top10_ssim: float
  pool_size: int


def evaluate(x_train: jax.Array, pool: jax.Array, mean: jax.Array, image_shape: tuple, *,
             half_res: bool = False, window: int = 3, sigma: float = 1.5, scale: str = "minmax",
             threshold: float = GOOD_SSIM, batch: int = 4096, padding: str = "reflect") -> Evaluation:
  """Reference evaluation; x_train (N, D) and pool (P, D) are in mean-subtracted space, mean (D,).

  scale: how a candidate becomes an image after the mean is added back: 'minmax' (the reference: each
  candidate scaled to [0, 1]) or 'clip' (clipped to the pixel range [0, 1]). Min-max scaling maps a
  candidate's most negative pixel to 0, so a reconstruction whose background dips below 0 gets a grey
  background, and SSIM's luminance term punishes that heavily with a 3x3 window. Needs an image shape
  (H, W, C); for vectors use `nearest_distances`. padding: the SSIM's ('reflect' = the reference's kornia).
  """
  if scale not in ("minmax", "clip"):
    raise ValueError(f"unknown scale {scale!r}; expected 'minmax' or 'clip'")
  x_train = jnp.asarray(x_train)
  pool = jnp.asarray(pool, x_train.dtype)
  n, p = x_train.shape[0], pool.shape[0]
  if p == 0:
    raise ValueError("empty candidate pool")
  a, b = x_train, pool
  if half_res:
    a, b = half_resolution(a, image_shape), half_resolution(b, image_shape)
  corr = _batched(lambda blk: ncc_matrix(a, blk, image_shape[-1]), b, batch, axis=1)  # (N, P)
  nearest_cand = jnp.argmax(corr, axis=1)
  nearest_train = jnp.argmax(corr, axis=0)
  mean = jnp.asarray(mean, x_train.dtype)[None, :]
  train_img = (x_train + mean).reshape((n,) + tuple(image_shape))
  cand = minmax(pool + mean) if scale == "minmax" else jnp.clip(pool + mean, 0.0, 1.0)
  cand_img = cand.reshape((p,) + tuple(image_shape))
  pair_ssim = _pair_ssim(window, float(sigma), padding)
  ssim_train = pair_ssim(train_img, cand_img[nearest_cand])
  ssim_cand = _batched(lambda blk: pair_ssim(train_img[nearest_train[blk]], cand_img[blk]),
                       jnp.arange(p), batch, axis=0)
  dist = nearest_distances(x_train, pool, batch)
  s = np.sort(np.asarray(ssim_train))[::-1]
  return Evaluation(np.asarray(ssim_train), np.asarray(nearest_cand), np.asarray(ssim_cand),
                    np.asarray(nearest_train), np.asarray(dist), int(np.sum(s > threshold)),
                    float(np.mean(s[:10])), int(p))


@functools.lru_cache(maxsize=16)
def _pair_ssim(window: int, sigma: float, padding: str):
  """jit(vmap(ssim)) built once per setting (a fresh jit per evaluation recompiled every time)."""
  return jax.jit(jax.vmap(lambda u, v: ssim(u, v, window, sigma, padding=padding)))


def _batched(fn, xs, batch: int, axis: int):
  parts = [fn(xs[i:i + batch]) for i in range(0, xs.shape[0], batch)]
  return jnp.concatenate(parts, axis=axis)


def sq_distances(a_ND: jax.Array, b_MD: jax.Array) -> jax.Array:
  """(N, M) squared L2 distances, clipped at 0."""
  d = (jnp.sum(a_ND ** 2, axis=1)[:, None] + jnp.sum(b_MD ** 2, axis=1)[None, :]
       - 2.0 * a_ND @ b_MD.T)
  return jnp.maximum(d, 0.0)


def nearest_distances(x_ND: jax.Array, pool_MD: jax.Array, batch: int = 4096) -> jax.Array:
  """(N,) distance of each row of x to its closest row of the pool."""
  x_ND = jnp.asarray(x_ND)
  pool_MD = jnp.asarray(pool_MD, x_ND.dtype)
  mins = [jnp.min(sq_distances(x_ND, pool_MD[i:i + batch]), axis=1)
          for i in range(0, pool_MD.shape[0], batch)]
  return jnp.sqrt(jnp.min(jnp.stack(mins), axis=0))


def greedy_match(x_ND, pool_MD) -> tuple:
  """L2 greedy one-to-one matching: repeatedly pair the closest remaining (train, candidate).

  Returns (train_idx, cand_idx, dist), each of length min(N, M), in the order the pairs were taken
  (so `dist` is non-decreasing: the reconstruction curve in L2).
  """
  d = np.sqrt(np.asarray(sq_distances(jnp.asarray(x_ND), jnp.asarray(pool_MD, jnp.asarray(x_ND).dtype))))
  n, m = d.shape
  order = np.argsort(d, axis=None, kind="stable")
  used_r, used_c = np.zeros(n, bool), np.zeros(m, bool)
  ti, ci, dist = [], [], []
  for flat in order:
    r, c = divmod(int(flat), m)
    if used_r[r] or used_c[c]:
      continue
    used_r[r] = used_c[c] = True
    ti.append(r), ci.append(c), dist.append(d[r, c])
    if len(ti) == min(n, m):
      break
  return np.array(ti), np.array(ci), np.array(dist)


def reconstruction_curve(ssim_train) -> np.ndarray:
  """The reference's curve: each training image's best SSIM, sorted from best to worst."""
  return np.sort(np.asarray(ssim_train))[::-1]


def pool_candidates(cands_CMD, losses_C, top: int = 0):
  """Candidates of the `top` configurations with the smallest finite final loss (0 = all finite).

  Returns (pool (P, D), config index per candidate (P,), candidate index within its config (P,)).
  """
  cands = np.asarray(cands_CMD)
  losses_C = np.asarray(losses_C, np.float64)
  ok = np.flatnonzero(np.isfinite(losses_C) & np.all(np.isfinite(cands), axis=(1, 2)))
  ok = ok[np.argsort(losses_C[ok], kind="stable")]
  if top:
    ok = ok[:top]
  m = cands.shape[1]
  pool = cands[ok].reshape((-1, cands.shape[2]))
  return pool, np.repeat(ok, m), np.tile(np.arange(m), ok.size)


def margin_score(q_P: jax.Array, margin: Optional[float] = None) -> np.ndarray:
  """How close a candidate's margin y_hat Phi(x_hat) is to the training margin: -|log(q / margin)|.

  Without the training set the margin is unknown; by default it is estimated as the median of the positive
  margins above a tenth of the largest (reconstructions of support vectors all sit at one margin, failed
  candidates drift to 0). Candidates with q <= 0 score -inf.
  """
  q = np.asarray(q_P, np.float64)
  if margin is None:
    pos = q[q > 0.1 * np.max(q)] if np.any(q > 0) else q[:0]
    margin = float(np.median(pos)) if pos.size else 1.0
  with np.errstate(divide="ignore", invalid="ignore"):
    s = -np.abs(np.log(q / margin))
  return np.where(q > 0, s, -np.inf)


def ranking_quality(score, positive) -> dict:
  """AUC of a training-set-free score for the good candidates, and precision among its top k (k = #good)."""
  positive = np.asarray(positive, bool)
  k = int(positive.sum())
  top = np.argsort(-np.asarray(score, np.float64), kind="stable")[:k] if k else []
  return {"auc": stats.auc(score, positive), "precision_at_k": float(np.mean(positive[top])) if k else float("nan"),
          "k": k}


# ----------------------------------------------------------------------------------- typed headline numbers


class Baseline(NamedTuple):
  """The evaluation of a pool no attack produced (the mean image alone, held-out images)."""
  n_good: int
  mean_top10_ssim: float
  pool_size: int


class ScaleNumbers(NamedTuple):
  """The reference evaluation's numbers under one way of turning a candidate into an image."""
  evaluation: Evaluation
  baselines: dict                      # name -> Baseline
  n_good_beating: dict                 # name -> training images with SSIM > 0.4 AND above that baseline
  good_candidates: int                 # candidates with SSIM > 0.4 with their nearest training image
  baseline_curves: dict                # name -> that baseline's reconstruction curve

  @property
  def n_good(self) -> int:
    return self.evaluation.n_good

  @property
  def mean_top10_ssim(self) -> float:
    return self.evaluation.mean_top10_ssim


class ImageNumbers(NamedTuple):
  minmax: ScaleNumbers   # the reference's protocol: the headline numbers
  clip: ScaleNumbers


class VectorNumbers(NamedTuple):
  """Vector data: reconstruction by L2 distance, in the units of the data."""
  n_close: int            # training points with a candidate within close_tol x the data radius
  close_tol: float
  mean_best5_dist: float  # mean distance of the 5 best-reconstructed training points
  median_dist: float
  data_radius: float      # RMS norm of the training points
  dist_train: np.ndarray  # (N,) each training point's distance to its closest candidate
  dist_cand: np.ndarray   # (P,) each candidate's distance to its closest training point


def against_baselines(x_train, pool, mean, image_shape, baseline_pools: dict, *, scale: str,
                      **kw) -> ScaleNumbers:
  """`evaluate` of the pool, and of each baseline pool ({name: (P_b, D)}, empty ones skipped) beside it."""
  ev = evaluate(x_train, pool, mean, image_shape, scale=scale, **kw)
  base, beats, bcurves = {}, {}, {}
  for name, bpool in baseline_pools.items():
    if bpool.shape[0]:
      b = evaluate(x_train, bpool, mean, image_shape, scale=scale, **kw)
      base[name] = Baseline(b.n_good, b.mean_top10_ssim, b.pool_size)
      beats[name] = int(np.sum((ev.ssim_train > GOOD_SSIM) & (ev.ssim_train > b.ssim_train)))
      bcurves[name] = reconstruction_curve(b.ssim_train)
  return ScaleNumbers(ev, base, beats, int(np.sum(ev.ssim_cand > GOOD_SSIM)), bcurves)


def vector_numbers(x_train, pool, close_tol: float, radius: float) -> VectorNumbers:
  """Distances both ways between training points and candidates; close = within close_tol x radius."""
  x = jnp.asarray(x_train)
  dist = np.asarray(nearest_distances(x, pool))
  cand_dist = np.asarray(nearest_distances(jnp.asarray(pool, x.dtype), x))
  curve = np.sort(dist)
  return VectorNumbers(int(np.sum(dist < close_tol * radius)), close_tol, float(np.mean(curve[:5])),
                       float(np.median(dist)), radius, dist, cand_dist)


def image_numbers(x_train, pool, mean, image_shape, x_heldout=None, *, half_res: Optional[bool] = None,
                  **kw) -> ImageNumbers:
  """The reference evaluation with min-max and clipped candidates, each beside what the threshold gives with
  no information: the mean image alone (a zero candidate) and held-out images of the same distribution (as
  many as the pool) standing in for candidates. half_res None: for colour images, as the reference does."""
  half = half_res if half_res is not None else image_shape[-1] == 3
  bases = {"mean_image": np.zeros((1, np.shape(pool)[1]))}
  if x_heldout is not None and np.shape(x_heldout)[0]:
    bases["heldout"] = np.asarray(x_heldout)[:np.shape(pool)[0]]
  return ImageNumbers(*(against_baselines(x_train, pool, mean, tuple(image_shape), bases, scale=s, half_res=half,
                                          **kw) for s in ("minmax", "clip")))
