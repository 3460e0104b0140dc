"""The attack job's evaluation: pools the candidates, evaluates them against the baselines no attack needs,
ranks them without the training set, draws the figures, and returns the typed `AttackOutcome`."""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import credit as credit_lib
from jaxrecon import data as data_lib
from jaxrecon import plotting
from jaxrecon import workdir as wd
from jaxrecon.attack import evaluate
from jaxrecon.attack import loss as attack_loss


class AttackOutcome(NamedTuple):
  """What an attack job hands to the jobs built on it; its JSON form is the run's summary.json (`summary`).

  kind: 'images' | 'vectors' | 'nothing' (every configuration diverged, nothing to evaluate)."""
  kind: str
  configs: int
  steps: int
  pool_size: int
  wall_s: float
  final_loss: np.ndarray   # (configs,), NaN where a configuration diverged
  final_stat: np.ndarray
  images: Optional[evaluate.ImageNumbers]
  vectors: Optional[evaluate.VectorNumbers]
  headline: str
  summary: dict


def evaluate_candidates(config, ds, params, raw, summary, workdir, log) -> AttackOutcome:
  """Pools, evaluates and ranks the candidates; writes candidates.npz, summary.json and the figures."""
  pool, pool_cfg, pool_idx = evaluate.pool_candidates(raw["x"], raw["loss"], config.pool_top)
  summary = dict(summary)
  if config.distinct > 0 and pool.shape[0]:
    kept = credit_lib.distinct(pool, config.distinct, credit_lib.rule_for(ds.image_shape))
    summary.update(pool_before_distinct=int(pool.shape[0]), distinct=config.distinct)
    pool, pool_cfg, pool_idx = pool[kept], pool_cfg[kept], pool_idx[kept]
  arrays = dict(raw, pool_config=pool_cfg, pool_index=pool_idx)
  summary.update(pool_size=int(pool.shape[0]), pool_configs=int(np.unique(pool_cfg).size))
  images = vectors = None
  if pool.shape[0] == 0:
    log("every configuration diverged: nothing to evaluate (lower the x learning rates)")
    summary.update({"n_good_ssim_0.4": 0, "mean_top10_ssim": None,
                    "headline": "every configuration diverged: nothing to evaluate"})
  else:
    q = np.asarray(attack_loss.candidate_margins(params, jnp.asarray(pool, params[0]["w"].dtype),
                                                 jnp.asarray(raw["y_hat"])[pool_idx]))
    lam_pool = raw["lam"][pool_cfg, pool_idx]
    scores = {"margin": evaluate.margin_score(q), "lambda": lam_pool}
    arrays.update(pool_margin=q, pool_lambda=lam_pool)
    if ds.image_shape:
      images = _evaluate_images(config, ds, pool, scores, arrays, summary, workdir)
    else:
      vectors = _evaluate_vectors(config, ds, pool, scores, arrays, summary, workdir)
    summary["credit"] = credit_report(ds, pool, pool_cfg, arrays)
    summary["headline"] += "; recovery measure: " + credit_lib.summary_line(summary["credit"], "configuration")
    if ds.image_shape:
      credited_pairs(ds, pool, arrays, config.figure_pairs, summary["credit"], os.path.join(workdir, "credited.png"))
  wd.write_npz(os.path.join(workdir, "candidates.npz"), **arrays)
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  log(summary["headline"])
  kind = "nothing" if pool.shape[0] == 0 else ("images" if images is not None else "vectors")
  return AttackOutcome(kind, summary["configs"], summary["steps"], summary["pool_size"], summary["wall_s"],
                       np.asarray(summary["final_loss"], float), np.asarray(summary["final_stat"], float),
                       images, vectors, summary["headline"], summary)


def credit_report(ds, pool, units, arrays: Optional[dict] = None, seed: int = 0) -> dict:
  """The recovery measure (jaxrecon.credit) of the pool: the first half of the held-out points are the
  reference competitors, the second half the held-out null; intervals over the sweep's configurations."""
  x_test = np.asarray(ds.x_test)
  half = x_test.shape[0] // 2
  rule = credit_lib.rule_for(ds.image_shape)
  got = credit_lib.credit(pool, ds.x_train, x_test[:half], rule)
  rep = credit_lib.report(jax.random.key(seed), pool, ds.x_train, x_test[:half], x_null=x_test[half:], rule=rule,
                          units=units, labels=np.asarray(ds.y_train) if np.ndim(ds.y_train) == 1 else None,
                          attack=got)
  rep["heldout_reference"], rep["heldout_null_points"] = int(half), int(x_test.shape[0] - half)
  if arrays is not None:
    arrays.update(credit_train_index=got.train_index, credit_similarity=got.similarity)
  return rep


def credited_pairs(ds, pool, arrays: dict, k: int, rep: dict, path: str) -> None:
  """The recovery measure's figure: each training point under its most similar candidate (NCC), the credited
  ones first (green), each group sorted by similarity; the best k shown."""
  credited = arrays["credit_train_index"]
  cand, sim = credit_lib.best_candidates(pool, ds.x_train, credit_lib.Rule(**rep["rule"]))
  best_credited = np.full(ds.x_train.shape[0], -1)
  best_sim = np.full(ds.x_train.shape[0], -np.inf)
  for c in np.flatnonzero(credited >= 0):  # the credited candidate most similar to each credited point
    i = credited[c]
    if arrays["credit_similarity"][c] > best_sim[i]:
      best_credited[i], best_sim[i] = c, arrays["credit_similarity"][c]
  is_credited = best_credited >= 0
  cand = np.where(is_credited, best_credited, cand)
  sim = np.where(is_credited, best_sim, sim)
  order = np.lexsort((-sim, ~is_credited))[:k]
  nulls = ", ".join(f"{n.replace('_', ' ')} {v['n_credited_max']}" for n, v in rep["nulls"].items())
  plotting.pairs(ds, pool, order, cand[order], sim[order], is_credited[order], path,
                 f"{rep['attack']['n_credited']} of {ds.x_train.shape[0]} training images credited (green; "
                 f"title: NCC with the candidate above); nulls at most: {nulls}", scale="minmax")


def _ranking(scores: dict, positive) -> dict:
  return {name: evaluate.ranking_quality(s, positive) for name, s in scores.items()}


def _scale_json(r: evaluate.ScaleNumbers, scores: dict) -> dict:
  return {"n_good_ssim_0.4": r.n_good, "mean_top10_ssim": r.mean_top10_ssim,
          "baselines": {k: {"n_good_ssim_0.4": b.n_good, "mean_top10_ssim": b.mean_top10_ssim,
                            "pool_size": b.pool_size} for k, b in r.baselines.items()},
          "n_good_beating_mean_image": r.n_good_beating.get("mean_image"),
          "n_good_beating_heldout": r.n_good_beating.get("heldout"),
          "good_candidates": r.good_candidates,
          "ranking": _ranking(scores, r.evaluation.ssim_cand > evaluate.GOOD_SSIM),
          "ssim_curve": evaluate.reconstruction_curve(r.evaluation.ssim_train).tolist()}


def _evaluate_images(config, ds, pool, scores, arrays, summary, workdir) -> evaluate.ImageNumbers:
  image_shape = tuple(ds.image_shape)
  half = config.half_res if config.half_res is not None else image_shape[-1] == 3
  nums = evaluate.image_numbers(ds.x_train, pool, ds.mean - ds.offset, image_shape, ds.x_test, half_res=half,
                                window=config.ssim_window, sigma=config.ssim_sigma)
  ev, ev_clip = nums.minmax.evaluation, nums.clip.evaluation
  arrays.update(ssim_train=ev.ssim_train, nearest_cand=ev.nearest_cand, ssim_cand=ev.ssim_cand,
                nearest_train=ev.nearest_train, dist_train=ev.dist_train, ssim_train_clip=ev_clip.ssim_train,
                ssim_cand_clip=ev_clip.ssim_cand)
  summary.update(half_res=half, **_scale_json(nums.minmax, scores))
  summary["clip"] = _scale_json(nums.clip, scores)

  def line(r):
    return (f"{r['n_good_ssim_0.4']} of {ds.x_train.shape[0]} with SSIM > 0.4, of them "
            f"{r['n_good_beating_mean_image']} above the mean image and {r['n_good_beating_heldout']} above "
            f"the best held-out image (top-10 mean "
            f"{r['mean_top10_ssim']:.3f}; baselines: " + ", ".join(
                f"{k} {v['n_good_ssim_0.4']} (top-10 {v['mean_top10_ssim']:.3f})"
                for k, v in r["baselines"].items()) + ")")
  summary["headline"] = (f"pool of {pool.shape[0]} candidates: min-max evaluation (reference) " + line(summary)
                         + "; clipped evaluation " + line(summary["clip"]))
  for e, name, scale in ((ev, "pairs.png", "minmax"), (ev_clip, "pairs_clip.png", "clip")):
    order = np.argsort(-e.ssim_train, kind="stable")[:config.figure_pairs]
    plotting.pairs(ds, pool, order, e.nearest_cand[order], e.ssim_train[order],
                   e.ssim_train[order] > evaluate.GOOD_SSIM, os.path.join(workdir, name),
                   f"best reconstructions (top, SSIM, {scale}) over their nearest training images; "
                   f"{e.n_good} with SSIM > 0.4, pool {e.pool_size}", scale=scale)
  plotting.curves({"min-max (reference)": summary["ssim_curve"], "clipped": summary["clip"]["ssim_curve"]},
                  "SSIM with the NCC-nearest candidate", os.path.join(workdir, "curve.png"),
                  threshold=evaluate.GOOD_SSIM,
                  baselines={k.replace("_", " "): v for k, v in nums.minmax.baseline_curves.items()})
  return nums


def _evaluate_vectors(config, ds, pool, scores, arrays, summary, workdir) -> evaluate.VectorNumbers:
  radius = data_lib.rms_radius(ds.x_train)
  v = evaluate.vector_numbers(ds.x_train, pool, config.close_tol, radius)
  arrays.update(dist_train=v.dist_train, dist_cand=v.dist_cand)
  curve = np.sort(v.dist_train)
  # the chance level: held-out points of the same distribution (as many as the pool) standing in for candidates
  heldout = np.asarray(ds.x_test)[:pool.shape[0]]
  null = evaluate.vector_numbers(ds.x_train, heldout, config.close_tol, radius) if heldout.shape[0] else None
  summary.update({"n_good_ssim_0.4": None, "mean_top10_ssim": None, "data_radius": v.data_radius,
                  "n_close": v.n_close, "close_tol": v.close_tol, "mean_best5_dist": v.mean_best5_dist,
                  "median_dist": v.median_dist,
                  "ranking": _ranking(scores, v.dist_cand < v.close_tol * v.data_radius),
                  "dist_curve": curve.tolist(),
                  "baselines": {} if null is None else {"heldout": {
                      "n_close": null.n_close, "mean_best5_dist": null.mean_best5_dist,
                      "median_dist": null.median_dist, "pool_size": int(heldout.shape[0])}}})
  summary["headline"] = (f"{v.n_close} of {ds.x_train.shape[0]} training points have a candidate within "
                         f"{v.close_tol:g} x the data radius; best-5 mean distance "
                         f"{v.mean_best5_dist:.3f} (radius {v.data_radius:.3f}), pool of {pool.shape[0]}"
                         + ("" if null is None else
                            f"; chance level ({heldout.shape[0]} held-out points, no attack): {null.n_close} "
                            f"within, best five at {null.mean_best5_dist:.3f}"))
  plotting.curves({"attack": curve / v.data_radius}, "distance to the closest candidate / data radius",
                  os.path.join(workdir, "curve.png"), threshold=v.close_tol,
                  baselines={} if null is None else {"held-out points": np.sort(null.dist_train) / radius})
  return v
