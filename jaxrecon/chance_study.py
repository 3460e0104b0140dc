"""study_chance: are reconstructions copies of training points, or just points of the same distribution?

For every candidate of an attack workdir: its distance to the closest training point and to the closest
held-out point of the same distribution (the test split, as many points as the training set). A candidate that
copies a training point is far closer to train than to held-out; one that is merely typical of the
distribution is about as close to both. Reports both distributions, the fraction of candidates closer to train
than to held-out, and the same for candidates within a distance quantile; works in the attack's (mean-
subtracted) space with L2 and, for images, also with NCC (similarity instead of distance). Every statistic is
computed on a null as well: fresh test points used as candidates, no attack at all.
"""

from __future__ import annotations

import os
from typing import Callable

import jax.numpy as jnp
import numpy as np

from jaxrecon import metrics
from jaxrecon import plotting
from jaxrecon import train
from jaxrecon import workdir as wd


def wilson(k: int, n: int, z: float = 1.96) -> tuple:
  """95% Wilson score interval of a binomial proportion k / n."""
  if n == 0:
    return (float("nan"), float("nan"))
  p = k / n
  c = (p + z * z / (2 * n)) / (1 + z * z / n)
  h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return (float(c - h), float(c + h))


def statistics(d_tr, d_ho, ncc_tr, ncc_ho, quantile: float = 0.01) -> dict:
  """The study's statistics for one candidate set, each a proportion with its 95% interval.

  closer_l2 / closer_ncc: fraction of candidates closer to a training point than to a held-out one.
  closest_symmetric: the same among the `quantile` of candidates closest to EITHER set (selected by
  min(d_train, d_heldout), which treats both sets alike, so a candidate that is merely typical of the
  distribution sits on either side with the same odds). closest_to_train: among the `quantile` closest to the
  TRAINING set (selection-biased: the selection already favours train; kept only beside its null).
  """
  closer = d_tr < d_ho
  k = max(1, int(round(quantile * d_tr.size)))
  sym = np.argsort(np.minimum(d_tr, d_ho), kind="stable")[:k]
  tr_sel = np.argsort(d_tr, kind="stable")[:k]
  out = {}
  for name, sel in (("closer_l2", closer), ("closer_ncc", ncc_tr > ncc_ho), ("closest_symmetric", closer[sym]),
                    ("closest_to_train", closer[tr_sel])):
    out[name] = {"fraction": float(np.mean(sel)), "n": int(sel.size), "ci95": wilson(int(np.sum(sel)), sel.size)}
  out["median_dist_train"] = float(np.median(d_tr))
  out["median_dist_heldout"] = float(np.median(d_ho))
  return out


def _distances(p, tr, ho):
  return (np.asarray(metrics.nearest_distances(p, tr)), np.asarray(metrics.nearest_distances(p, ho)),
          np.asarray(jnp.max(metrics.ncc_matrix(p, tr), axis=1)), np.asarray(jnp.max(metrics.ncc_matrix(p, ho), axis=1)))


@wd.job("study_chance", "out_dir")
def run(attack_workdir: str, out_dir: str, log: Callable = print, quantile: float = 0.01) -> dict:
  """Runs the study and its null in one go.

  Held-out reference set H: the first n test points (n = training set size). Null candidates: the remaining
  test points (as many as the pool, at most), fresh points of the same distribution that no attack produced;
  every statistic is computed on them exactly as on the attack's candidates, so each figure has its chance
  level measured beside it.
  """
  saved = wd.read_json(os.path.join(attack_workdir, "config.json"))
  _, ds, _ = train.load_run(saved["train_workdir"])
  arrays = wd.read_npz(os.path.join(attack_workdir, "candidates.npz"))
  x = np.asarray(arrays["x"])
  ok = np.isfinite(arrays["loss"]) & np.all(np.isfinite(x), axis=(1, 2))
  pool = x[ok].reshape((-1, x.shape[-1]))
  n = ds.x_train.shape[0]
  test = np.asarray(ds.x_test)
  heldout, null = test[:n], test[n:n + pool.shape[0]]
  if heldout.shape[0] < n:
    log(f"only {heldout.shape[0]} held-out points for {n} training points")
  if null.shape[0] < 100:
    log(f"only {null.shape[0]} test points left for the null (train with a larger n_test for a tighter one)")
  tr, ho = jnp.asarray(ds.x_train), jnp.asarray(heldout, ds.x_train.dtype)
  d_tr, d_ho, ncc_tr, ncc_ho = _distances(jnp.asarray(pool, tr.dtype), tr, ho)
  attack = statistics(d_tr, d_ho, ncc_tr, ncc_ho, quantile)
  nd = _distances(jnp.asarray(null, tr.dtype), tr, ho) if null.shape[0] else None
  null_stats = statistics(*nd, quantile) if nd is not None else None
  summary = {"pool_size": int(pool.shape[0]), "n_train": n, "n_heldout": int(heldout.shape[0]),
             "n_null": int(null.shape[0]), "quantile": quantile, "attack": attack, "null": null_stats}
  if null_stats is not None:
    pct = lambda v: f"{100 * v:.1f}%"
    lines = []
    for name, label in (("closer_l2", "closer (L2) to train than to held-out"),
                        ("closer_ncc", "closer (NCC)"),
                        ("closest_symmetric", f"closer, among the {quantile:.0%} closest to either set"),
                        ("closest_to_train", f"closer, among the {quantile:.0%} closest to train (biased)")):
      a, z = attack[name], null_stats[name]
      sig = a["ci95"][0] > z["ci95"][1] or a["ci95"][1] < z["ci95"][0]
      lines.append(f"{label}: {pct(a['fraction'])} [{pct(a['ci95'][0])}, {pct(a['ci95'][1])}] vs null "
                   f"{pct(z['fraction'])} [{pct(z['ci95'][0])}, {pct(z['ci95'][1])}]"
                   + (" (intervals apart)" if sig else " (intervals overlap)"))
    summary["headline"] = (f"{pool.shape[0]} candidates vs {null.shape[0]} fresh test points (the null): "
                           + "; ".join(lines))
  else:
    summary["headline"] = "no test points left for the null: " + str(attack)
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"attack_workdir": os.path.abspath(attack_workdir),
                                                        "quantile": quantile})
  extra = {} if nd is None else dict(zip(("null_dist_train", "null_dist_heldout", "null_ncc_train",
                                          "null_ncc_heldout"), nd))
  wd.write_npz(os.path.join(out_dir, "distances.npz"), dist_train=d_tr, dist_heldout=d_ho, ncc_train=ncc_tr,
               ncc_heldout=ncc_ho, **extra)
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  _plot(d_tr, d_ho, ncc_tr, ncc_ho, nd, os.path.join(out_dir, "chance.png"))
  log(summary["headline"])
  return summary


def _plot(d_tr, d_ho, ncc_tr, ncc_ho, nd, path):
  fig, axes = plotting.subplots(1, 2, figsize=(10, 3.6))
  bins = np.linspace(min(d_tr.min(), d_ho.min()), max(d_tr.max(), d_ho.max()), 60)
  axes[0].hist(d_tr, bins, alpha=0.6, label="to the closest training point")
  axes[0].hist(d_ho, bins, alpha=0.6, label="to the closest held-out point")
  if nd is not None and nd[0].size:
    r = d_tr - d_ho
    axes[0].set_title("candidates", fontsize=9)
    ax_n = axes[0].inset_axes([0.62, 0.55, 0.36, 0.4])
    bins_r = np.linspace(min(r.min(), (nd[0] - nd[1]).min()), max(r.max(), (nd[0] - nd[1]).max()), 40)
    ax_n.hist(r, bins_r, alpha=0.6, density=True, label="attack")
    ax_n.hist(nd[0] - nd[1], bins_r, alpha=0.6, density=True, label="null")
    ax_n.axvline(0, color="k", lw=0.8)
    ax_n.set_title("d_train - d_heldout", fontsize=7)
    ax_n.tick_params(labelsize=6)
    ax_n.legend(fontsize=6)
  axes[0].set_xlabel("L2 distance of a candidate")
  axes[1].scatter(ncc_ho, ncc_tr, s=3, alpha=0.4, label="attack")
  if nd is not None and nd[0].size:
    axes[1].scatter(nd[3], nd[2], s=3, alpha=0.4, label="null (fresh test points)")
    axes[1].legend(fontsize=8)
  lim = [min(ncc_ho.min(), ncc_tr.min()), 1.0]
  axes[1].plot(lim, lim, "k--", lw=1)
  axes[1].set_xlabel("best NCC with a held-out point")
  axes[1].set_ylabel("best NCC with a training point")
  axes[0].legend(fontsize=8, loc="upper left")
  for ax in axes:
    ax.grid(alpha=0.3)
  plotting.save(fig, path, dpi=100)
