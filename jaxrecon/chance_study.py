"""study_chance: are reconstructions copies of training points, or just points of the same distribution?

For every candidate of an attack workdir: its distance to the closest training point and to the closest
held-out point of the same distribution (the test split, as many points as the training set). A candidate that
copies a training point is far closer to train than to held-out; one that is merely typical of the
distribution is about as close to both. Reports both distributions, the fraction of candidates closer to train
than to held-out, and the same for candidates within a distance quantile; works in the attack's (mean-
subtracted) space with L2 and, for images, also with NCC (similarity instead of distance).
"""

from __future__ import annotations

import os
from typing import Callable

import jax.numpy as jnp
import numpy as np

from jaxrecon import metrics
from jaxrecon import train
from jaxrecon import workdir as wd


def run(attack_workdir: str, out_dir: str, log: Callable = print) -> dict:
  saved = wd.read_json(os.path.join(attack_workdir, "config.json"))
  _, ds, _ = train.load_run(saved["train_workdir"])
  arrays = wd.read_npz(os.path.join(attack_workdir, "candidates.npz"))
  x = np.asarray(arrays["x"])
  ok = np.isfinite(arrays["loss"]) & np.all(np.isfinite(x), axis=(1, 2))
  pool = x[ok].reshape((-1, x.shape[-1]))
  n = ds.x_train.shape[0]
  heldout = np.asarray(ds.x_test)[:n]
  if heldout.shape[0] < n:
    log(f"only {heldout.shape[0]} held-out points for {n} training points")
  tr, ho = jnp.asarray(ds.x_train), jnp.asarray(heldout, ds.x_train.dtype)
  p = jnp.asarray(pool, tr.dtype)
  d_tr = np.asarray(metrics.nearest_distances(p, tr))
  d_ho = np.asarray(metrics.nearest_distances(p, ho))
  ncc_tr = np.asarray(jnp.max(metrics.ncc_matrix(p, tr), axis=1))
  ncc_ho = np.asarray(jnp.max(metrics.ncc_matrix(p, ho), axis=1))
  closer = d_tr < d_ho
  best = d_tr <= np.quantile(d_tr, 0.01)
  summary = {"pool_size": int(pool.shape[0]), "n_train": n, "n_heldout": int(heldout.shape[0]),
             "fraction_closer_to_train_l2": float(np.mean(closer)),
             "fraction_closer_to_train_ncc": float(np.mean(ncc_tr > ncc_ho)),
             "best_1pct_fraction_closer_to_train_l2": float(np.mean(closer[best])),
             "median_dist_train": float(np.median(d_tr)), "median_dist_heldout": float(np.median(d_ho)),
             "median_ratio_train_over_heldout": float(np.median(d_tr / np.maximum(d_ho, 1e-300)))}
  summary["headline"] = (f"{100 * summary['fraction_closer_to_train_l2']:.1f}% of {pool.shape[0]} candidates "
                         f"are closer (L2) to a training point than to a held-out one "
                         f"({100 * summary['fraction_closer_to_train_ncc']:.1f}% by NCC; the closest 1%: "
                         f"{100 * summary['best_1pct_fraction_closer_to_train_l2']:.1f}%); 50% = chance")
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"attack_workdir": os.path.abspath(attack_workdir)})
  wd.write_npz(os.path.join(out_dir, "distances.npz"), dist_train=d_tr, dist_heldout=d_ho, ncc_train=ncc_tr,
               ncc_heldout=ncc_ho)
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  _plot(d_tr, d_ho, ncc_tr, ncc_ho, os.path.join(out_dir, "chance.png"))
  log(summary["headline"])
  return summary


def _plot(d_tr, d_ho, ncc_tr, ncc_ho, path):
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  bins = np.linspace(min(d_tr.min(), d_ho.min()), max(d_tr.max(), d_ho.max()), 60)
  axes[0].hist(d_tr, bins, alpha=0.6, label="to the closest training point")
  axes[0].hist(d_ho, bins, alpha=0.6, label="to the closest held-out point")
  axes[0].set_xlabel("L2 distance of a candidate")
  axes[1].scatter(ncc_ho, ncc_tr, s=3, alpha=0.4)
  lim = [min(ncc_ho.min(), ncc_tr.min()), 1.0]
  axes[1].plot(lim, lim, "k--", lw=1)
  axes[1].set_xlabel("best NCC with a held-out point")
  axes[1].set_ylabel("best NCC with a training point")
  axes[0].legend(fontsize=8)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
