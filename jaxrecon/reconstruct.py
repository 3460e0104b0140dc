"""The attack as a job: sweep against one checkpoint of a training workdir, pool, evaluate, write.

Writes into its workdir: config.json, metrics.jsonl (per chunk and log step: the loss terms of every
configuration), candidates.npz (all final candidates, multipliers, swept values, losses, the pool and its
evaluation), summary.json (n_good_ssim_0.4, mean_top10_ssim, pool_size, configs, steps, wall_s, ...) and
figures: pairs.png (the best reconstructions sorted by SSIM, each above its nearest training image, as in the
paper) and curve.png (the reconstruction curve). For vector data (no image shape) the evaluation is by L2
distance instead of SSIM.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import attack
from jaxrecon import data as data_lib
from jaxrecon import metrics
from jaxrecon import nets
from jaxrecon import plotting
from jaxrecon import train
from jaxrecon import workdir as wd


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """Which configurations to run: `configs` random draws from `ranges` (the reference's by default; a
  (lo, hi) pair with lo == hi fixes a value), or the Cartesian product of `grid` ({name: [values]})."""
  configs: int = 16
  kind: str = "random"
  ranges: Optional[dict] = None
  grid: Optional[dict] = None
  seeds: int = 1
  seed: int = 0

  def hyper(self, key: jax.Array) -> attack.Hyper:
    if self.kind == "random":
      if self.configs < 1:
        raise ValueError("configs must be >= 1")
      ranges = {k: tuple(v) for k, v in (self.ranges or {}).items()}
      unknown = set(ranges) - set(attack.REFERENCE_RANGES)
      if unknown:
        raise ValueError(f"unknown swept values {sorted(unknown)}; expected {list(attack.REFERENCE_RANGES)}")
      return attack.random_sweep(key, self.configs, ranges, self.seeds)
    if self.kind == "grid":
      grid = dict(self.grid or {})
      missing = set(attack.REFERENCE_RANGES) - set(grid)
      if missing:
        raise ValueError(f"grid sweep needs values for {sorted(missing)}")
      return attack.grid_sweep(grid["init_scale"], grid["lr_x"], grid["lambda_min"], grid["alpha"],
                               tuple(range(max(self.seeds, 1))))
    raise ValueError(f"unknown sweep kind {self.kind!r}; expected 'random' or 'grid'")


@dataclasses.dataclass(frozen=True)
class ReconstructConfig:
  """step: the checkpoint to attack (None = the last). theta_scale: multiply the attacked weights by this
  (the attacker may rescale a homogeneous net; it moves the multipliers by theta_scale^(2 - L)).
  theta_norm: if > 0, rescale the weights to this norm instead (a data-free choice that makes one learning-rate
  range fit networks trained to very different norms).
  pool_top: pool the candidates of this many best configurations by final loss (0 = all finite).
  half_res: NCC at half resolution (None = for colour images, as the reference does for CIFAR).
  close_tol: for vector data, a training point counts as reconstructed when a candidate is within
  close_tol times the data's RMS norm.
  checkpoint_every_s: how often a long sweep saves its progress (candidates, multipliers, optimizer state) so
  that a killed attack resumes where it stopped, bit-identically (changing it does not change the run)."""
  attack: attack.AttackConfig = attack.AttackConfig()
  sweep: SweepConfig = SweepConfig()
  step: Optional[int] = None
  theta_scale: float = 1.0
  theta_norm: float = 0.0
  pool_top: int = 0
  half_res: Optional[bool] = None
  ssim_window: int = 3
  ssim_sigma: float = 1.5
  figure_pairs: int = 40
  close_tol: float = 0.1
  checkpoint_every_s: float = 60.0  # progress.npz at most this often (0 = every log_every segment)

  @staticmethod
  def from_dict(d: dict) -> "ReconstructConfig":
    d = dict(d)
    d["attack"] = attack.AttackConfig(**d.get("attack", {}))
    d["sweep"] = SweepConfig(**d.get("sweep", {}))
    return ReconstructConfig(**d)


def pick_checkpoint(ckpts: list, step: Optional[int]):
  if not ckpts:
    raise ValueError("the training workdir has no checkpoints")
  if step is None:
    return ckpts[-1]
  for s, p in ckpts:
    if s == step:
      return s, p
  raise ValueError(f"no checkpoint at step {step}; available: {[s for s, _ in ckpts]}")


def theta_scale(config: ReconstructConfig, params) -> float:
  if config.theta_norm > 0:
    return config.theta_norm / float(nets.param_norm(params))
  return config.theta_scale


def run(config: ReconstructConfig, train_workdir: str, workdir: str, key: Optional[jax.Array] = None,
        log: Callable = print, mesh=None) -> dict:
  """Attacks a checkpoint of `train_workdir`; writes `workdir`; returns the summary dict."""
  tcfg, ds, ckpts = train.load_run(train_workdir)
  step, params = pick_checkpoint(ckpts, config.step)
  params_init = ckpts[0][1] if ckpts[0][0] == 0 else None
  acfg = config.attack
  multiclass = ds.y_train.min() >= 0
  if multiclass and acfg.variant != "multiclass":
    acfg = dataclasses.replace(acfg, variant="multiclass")
  if acfg.variant == "multiclass" and acfg.n_classes <= 1:
    acfg = dataclasses.replace(acfg, n_classes=int(ds.y_train.max()) + 1)
  if not multiclass and acfg.variant == "multiclass":
    raise ValueError("variant 'multiclass' needs a multiclass network; this one has one output")
  if acfg.match_init and params_init is None:
    raise ValueError(f"{train_workdir} has no step-0 checkpoint; match_init needs the initialization")
  if acfg.dtype == "float64" and not jax.config.jax_enable_x64:
    raise ValueError("attack dtype float64 needs jax_enable_x64 (the scripts enable it at start; in a notebook "
                     "call jax.config.update('jax_enable_x64', True) first, or use dtype float32)")
  if key is None:
    key = jax.random.key(config.sweep.seed)
  key_sweep, key_attack = jax.random.split(key)
  hyper = config.sweep.hyper(key_sweep)
  scale = theta_scale(config, params)
  if scale != 1.0:
    params = nets.scale_params(params, scale)
    params_init = None if params_init is None else nets.scale_params(params_init, scale)

  if os.path.realpath(workdir) == os.path.realpath(train_workdir):
    raise wd.RunDirError(f"the attack's workdir {workdir} is the training workdir it attacks; choose another")
  with wd.claim(workdir, "attack"):
    run_config = {"attack": acfg, "sweep": config.sweep, "reconstruct": config,
                  "train_workdir": os.path.abspath(train_workdir), "step": step}
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    progress_path = os.path.join(workdir, PROGRESS_FILE)
    resume = _prior_attack(workdir, run_config, log)
    if resume == "finished":  # re-running a finished attack (e.g. a study resumed) re-evaluates it
      log(f"{workdir} holds this attack, finished: evaluating its saved candidates")
      return _reevaluate(workdir, log)
    if resume is None:
      wd.write_json(os.path.join(workdir, "config.json"), run_config)
      for stale in ("summary.json", "candidates.npz", PROGRESS_FILE):  # never beside this config's results
        if os.path.exists(os.path.join(workdir, stale)):
          os.remove(os.path.join(workdir, stale))
      wd.write_jsonl(metrics_path, [])
    else:
      wd.write_jsonl(metrics_path, wd.read_jsonl(metrics_path)[:resume.rows])
      log(f"resuming the attack in {workdir}: configurations {resume.c0 + 1}.. at step {resume.step}")
    n, d = ds.x_train.shape
    m = acfg.m or 2 * n
    log(f"attacking {train_workdir} at step {step}: {nets.num_params(params):,} parameters, n={n}; "
        f"{hyper.size} configurations x {m} candidates x {acfg.steps} steps ({acfg.optimizer}, prior "
        f"{acfg.prior}, {acfg.dtype})")

    def on_rows(rows):
      for r in rows:
        wd.append_jsonl(metrics_path, r)
    last_save = [time.time()]

    def on_progress(make_progress):
      if time.time() - last_save[0] >= config.checkpoint_every_s:
        _write_progress(progress_path, make_progress())
        last_save[0] = time.time()
    res = attack.run_sweep(key_attack, params, hyper, d, acfg, params_init=params_init, n_train=n,
                           mesh=mesh, log=log, on_rows=on_rows, resume=resume, on_progress=on_progress)

    summary = {"configs": hyper.size, "steps": acfg.steps, "m": m, "wall_s": res.wall_s,
               "compile_s": res.compile_s, "diverged": int(res.diverged.sum()), "attacked_step": step,
               "n_train": n, "theta_scale": scale,
               "candidate_steps_per_s": hyper.size * m * acfg.steps / max(res.wall_s - res.compile_s, 1e-9),
               "final_loss": [float(v) for v in res.loss], "final_stat": [float(v) for v in res.stat]}
    finite = np.isfinite(res.loss)
    if finite.any():
      best = int(np.nanargmin(np.where(finite, res.loss, np.nan)))
      summary["best_config"] = {**hyper.rows()[best], "index": best, "loss": float(res.loss[best])}
    raw = {"x": res.x, "lam": res.lam, "y_hat": res.y_hat, "loss": res.loss, "stat": res.stat,
           "diverged": res.diverged, **{f"hyper_{k}": np.asarray(v) for k, v in hyper._asdict().items()}}
    wd.write_npz(os.path.join(workdir, "candidates.npz"), **raw)  # kept even if the evaluation fails
    wd.write_json(os.path.join(workdir, "summary.json"), summary)
    if os.path.exists(progress_path):
      os.remove(progress_path)
    return _evaluate(config, ds, params, raw, summary, workdir, log)


PROGRESS_FILE = "progress.npz"
PROGRESS_FIELDS = ("x", "lam", "loss", "stat", "diverged")


# Fields that may change between a run and its resumption (they do not change the computation).
RESUMABLE_CHANGES = ("reconstruct.checkpoint_every_s",)


def _config_diffs(workdir: str, run_config: dict) -> Optional[list]:
  """What differs from the attack config saved in workdir (None when there is none)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  return wd.config_diffs(wd.read_json(path), run_config, ignore=RESUMABLE_CHANGES)


def _has(workdir: str, *names) -> bool:
  return all(os.path.exists(os.path.join(workdir, n)) for n in names)


def _prior_attack(workdir: str, run_config: dict, log: Callable):
  """What workdir holds of this attack: 'finished', its saved SweepProgress, or None (start afresh).

  Refuses (RunDirError) a folder whose attack has another config and results or progress to lose."""
  diffs = _config_diffs(workdir, run_config)
  if diffs is None:
    return None
  if diffs:
    if _has(workdir, "summary.json") or _has(workdir, PROGRESS_FILE):
      raise wd.RunDirError(f"{workdir} holds an attack with a different config ({', '.join(diffs)} differ); "
                           "use a new --workdir (or delete it)")
    return None
  if _has(workdir, "summary.json", "candidates.npz"):
    return "finished"
  if not _has(workdir, PROGRESS_FILE) or _has(workdir, "summary.json"):
    return None
  try:
    return _read_progress(os.path.join(workdir, PROGRESS_FILE))
  except wd.RunDirError as e:
    log(f"{e}; starting the attack afresh")
    return None


def _write_progress(path: str, p: attack.SweepProgress) -> None:
  arrays = {f: getattr(p, f) for f in PROGRESS_FIELDS}
  arrays.update(c0=p.c0, step=p.step, rows=p.rows, wall_s=p.wall_s)
  if p.states is not None:
    arrays.update({f"state_{i}": np.asarray(v) for i, v in enumerate(jax.tree_util.tree_leaves(p.states))})
  wd.write_npz(path, **arrays)


def _read_progress(path: str) -> attack.SweepProgress:
  a = wd.read_npz(path)
  states = [a[f"state_{i}"] for i in range(sum(k.startswith("state_") for k in a))] or None
  return attack.SweepProgress(int(a["c0"]), int(a["step"]), states, *(a[f] for f in PROGRESS_FIELDS),
                              int(a["rows"]), float(a["wall_s"]))


def reevaluate(workdir: str, log: Callable = print, **overrides) -> dict:
  """Evaluates an attack workdir's candidates again (e.g. with other `ReconstructConfig` evaluation fields:
  pool_top, half_res, ssim_window, ssim_sigma, figure_pairs, close_tol); rewrites its summary and figures."""
  with wd.claim(workdir, "attack"):
    return _reevaluate(workdir, log, **overrides)


def _reevaluate(workdir: str, log: Callable = print, **overrides) -> dict:
  saved = wd.read_json(os.path.join(workdir, "config.json"))
  config = dataclasses.replace(ReconstructConfig.from_dict(saved["reconstruct"]), **overrides)
  _, ds, ckpts = train.load_run(saved["train_workdir"])
  _, params = pick_checkpoint(ckpts, saved["step"])
  params = nets.scale_params(params, theta_scale(config, params))
  arrays = wd.read_npz(os.path.join(workdir, "candidates.npz"))
  raw = {k: v for k, v in arrays.items() if k in ("x", "lam", "y_hat", "loss", "stat", "diverged")
         or k.startswith("hyper_")}
  summary = wd.read_json(os.path.join(workdir, "summary.json"))
  keep = ("configs", "steps", "m", "wall_s", "compile_s", "diverged", "attacked_step", "n_train",
          "theta_scale", "candidate_steps_per_s", "final_loss", "final_stat", "best_config")
  return _evaluate(config, ds, params, raw, {k: summary[k] for k in keep if k in summary}, workdir, log)


def _evaluate(config, ds, params, raw, summary, workdir, log) -> dict:
  """Pools, evaluates and ranks the candidates; writes candidates.npz, summary.json and the figures."""
  pool, pool_cfg, pool_idx = metrics.pool_candidates(raw["x"], raw["loss"], config.pool_top)
  arrays = dict(raw, pool_config=pool_cfg, pool_index=pool_idx)
  summary = dict(summary, pool_size=int(pool.shape[0]), pool_configs=int(np.unique(pool_cfg).size))
  if pool.shape[0] == 0:
    log("every configuration diverged: nothing to evaluate (lower the x learning rates)")
    summary.update({"n_good_ssim_0.4": 0, "mean_top10_ssim": None,
                    "headline": "every configuration diverged: nothing to evaluate"})
  else:
    q = np.asarray(attack.candidate_margins(params, jnp.asarray(pool, params[0]["w"].dtype),
                                            jnp.asarray(raw["y_hat"])[pool_idx]))
    lam_pool = raw["lam"][pool_cfg, pool_idx]
    scores = {"margin": metrics.margin_score(q), "lambda": lam_pool}
    arrays.update(pool_margin=q, pool_lambda=lam_pool)
    if ds.image_shape:
      summary.update(_evaluate_images(config, ds, pool, scores, arrays, workdir))
    else:
      summary.update(_evaluate_vectors(config, ds, pool, scores, arrays, workdir))
  wd.write_npz(os.path.join(workdir, "candidates.npz"), **arrays)
  wd.write_json(os.path.join(workdir, "summary.json"), summary)
  log(summary["headline"])
  return summary


def _ranking(scores: dict, positive) -> dict:
  return {name: metrics.ranking_quality(s, positive) for name, s in scores.items()}


def _evaluate_images(config, ds, pool, scores, arrays, workdir) -> dict:
  image_shape = tuple(ds.image_shape)
  half = config.half_res if config.half_res is not None else image_shape[-1] == 3
  mean = ds.mean - ds.offset
  kw = dict(half_res=half, window=config.ssim_window, sigma=config.ssim_sigma)
  # What the threshold gives with no information: the mean image alone (a zero candidate), and held-out
  # images of the same distribution (as many as the pool, up to the test split) standing in for candidates.
  baseline_pools = {"mean_image": np.zeros((1, pool.shape[1])),
                    "heldout": np.asarray(ds.x_test)[:pool.shape[0]]}
  out = {"half_res": half}
  evs = {}
  for scale in ("minmax", "clip"):
    ev = evs[scale] = metrics.evaluate(ds.x_train, pool, mean, image_shape, scale=scale, **kw)
    base, beats = {}, {}
    for name, bpool in baseline_pools.items():
      if bpool.shape[0]:
        b = metrics.evaluate(ds.x_train, bpool, mean, image_shape, scale=scale, **kw)
        base[name] = {"n_good_ssim_0.4": b.n_good, "mean_top10_ssim": b.mean_top10_ssim,
                      "pool_size": b.pool_size}
        # Stricter counts: training images above 0.4 AND matched better than by this baseline.
        beats[name] = int(np.sum((ev.ssim_train > metrics.GOOD_SSIM) & (ev.ssim_train > b.ssim_train)))
    good = ev.ssim_cand > metrics.GOOD_SSIM
    res = {"n_good_ssim_0.4": ev.n_good, "mean_top10_ssim": ev.mean_top10_ssim, "baselines": base,
           "n_good_beating_mean_image": beats.get("mean_image"),
           "n_good_beating_heldout": beats.get("heldout"),
           "good_candidates": int(good.sum()), "ranking": _ranking(scores, good),
           "ssim_curve": metrics.reconstruction_curve(ev.ssim_train).tolist()}
    if scale == "minmax":  # the reference's protocol: the headline numbers
      out.update(res)
      arrays.update(ssim_train=ev.ssim_train, nearest_cand=ev.nearest_cand, ssim_cand=ev.ssim_cand,
                    nearest_train=ev.nearest_train, dist_train=ev.dist_train)
    else:
      out["clip"] = res
      arrays.update(ssim_train_clip=ev.ssim_train, ssim_cand_clip=ev.ssim_cand)

  def line(r):
    return (f"{r['n_good_ssim_0.4']} of {ds.x_train.shape[0]} with SSIM > 0.4, of them "
            f"{r['n_good_beating_mean_image']} above the mean image and {r['n_good_beating_heldout']} above "
            f"the best held-out image (top-10 mean "
            f"{r['mean_top10_ssim']:.3f}; baselines: " + ", ".join(
                f"{k} {v['n_good_ssim_0.4']} (top-10 {v['mean_top10_ssim']:.3f})"
                for k, v in r["baselines"].items()) + ")")
  out["headline"] = (f"pool of {pool.shape[0]} candidates: min-max evaluation (reference) " + line(out)
                     + "; clipped evaluation " + line(out["clip"]))
  plot_pairs(ds, pool, evs["minmax"], os.path.join(workdir, "pairs.png"), config.figure_pairs)
  plot_pairs(ds, pool, evs["clip"], os.path.join(workdir, "pairs_clip.png"), config.figure_pairs,
             scale="clip")
  plot_curve({"min-max (reference)": out["ssim_curve"], "clipped": out["clip"]["ssim_curve"]},
             "SSIM with the NCC-nearest candidate", os.path.join(workdir, "curve.png"))
  return out


def _evaluate_vectors(config, ds, pool, scores, arrays, workdir) -> dict:
  x = jnp.asarray(ds.x_train)
  dist = np.asarray(metrics.nearest_distances(x, pool))
  cand_dist = np.asarray(metrics.nearest_distances(jnp.asarray(pool, x.dtype), x))
  radius = data_lib.rms_radius(ds.x_train)
  tol = config.close_tol * radius
  arrays.update(dist_train=dist, dist_cand=cand_dist)
  curve = np.sort(dist)
  out = {"n_good_ssim_0.4": None, "mean_top10_ssim": None, "data_radius": radius,
         "n_close": int(np.sum(dist < tol)), "close_tol": config.close_tol,
         "mean_best5_dist": float(np.mean(curve[:5])), "median_dist": float(np.median(dist)),
         "ranking": _ranking(scores, cand_dist < tol), "dist_curve": curve.tolist()}
  out["headline"] = (f"{out['n_close']} of {ds.x_train.shape[0]} training points have a candidate within "
                     f"{config.close_tol:g} x the data radius; best-5 mean distance "
                     f"{out['mean_best5_dist']:.3f} (radius {radius:.3f}), pool of {pool.shape[0]}")
  plot_curve({"attack": curve / radius}, "distance to the closest candidate / data radius",
             os.path.join(workdir, "curve.png"))
  return out


def _to_image(v, image_shape):
  img = np.asarray(v).reshape(image_shape)
  return img[..., 0] if image_shape[-1] == 1 else np.clip(img, 0, 1)


def plot_pairs(ds, pool, ev: metrics.Evaluation, path: str, k: int = 40, cols: int = 10,
               scale: str = "minmax") -> None:
  """The best k training images by SSIM, each under its reconstruction (min-max scaled or clipped)."""
  order = np.argsort(-ev.ssim_train, kind="stable")[:k]
  shape = tuple(ds.image_shape)
  mean = np.asarray(ds.mean - ds.offset)[None, :]
  recon = pool[ev.nearest_cand[order]] + mean
  recon = np.asarray(metrics.minmax(jnp.asarray(recon))) if scale == "minmax" else np.clip(recon, 0, 1)
  truth = np.asarray(ds.x_train)[order] + mean
  groups = int(np.ceil(len(order) / cols))
  fig, axes = plotting.subplots(2 * groups, cols, figsize=(1.2 * cols, 2.5 * groups), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  cmap = "gray" if shape[-1] == 1 else None
  for i, t in enumerate(order):
    g, c = divmod(i, cols)
    axes[2 * g, c].imshow(_to_image(recon[i], shape), cmap=cmap)
    axes[2 * g, c].set_title(f"{ev.ssim_train[t]:.2f}", fontsize=7,
                             color="green" if ev.ssim_train[t] > metrics.GOOD_SSIM else "black")
    axes[2 * g + 1, c].imshow(_to_image(truth[i], shape), cmap=cmap)
  fig.suptitle(f"best reconstructions (top, SSIM, {scale}) over their nearest training images; "
               f"{ev.n_good} with SSIM > 0.4, pool {ev.pool_size}", fontsize=9)
  plotting.save(fig, path, dpi=100)


def plot_curve(curves: dict, ylabel: str, path: str) -> None:
  fig, ax = plotting.subplots(figsize=(5, 3.5))
  for name, curve in curves.items():
    ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
  if len(curves) > 1:
    ax.legend()
  ax.set_xlabel("training points, sorted")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  plotting.save(fig, path, dpi=100)
