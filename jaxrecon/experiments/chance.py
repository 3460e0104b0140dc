"""study_chance (the job): are an attack's reconstructions copies of training points, or just points of the
same distribution? The statistics are `jaxrecon.noprior.chance`; this job computes them for every candidate of
an attack workdir and, as the null, for fresh test points no attack produced, in the attack's (mean-subtracted)
space with L2 and NCC. Writes config.json, distances.npz, summary.json and chance.png.
"""

from __future__ import annotations

import os
from typing import Callable

import jax.numpy as jnp
import numpy as np

from jaxrecon import plotting
from jaxrecon import workdir as wd
from jaxrecon.experiments import train as train_job
from jaxrecon.noprior.chance import distances, statistics


def _headline(attack: dict, null_stats, pool_size: int, n_null: int, quantile: float) -> str:
  if null_stats is None:
    return "no test points left for the null: " + str(attack)
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
  return f"{pool_size} candidates vs {n_null} fresh test points (the null): " + "; ".join(lines)


@wd.job("study_chance", "out_dir")
def run(attack_workdir: str, out_dir: str, log: Callable = print, quantile: float = 0.01) -> dict:
  """Runs the study and its null in one go.

  Held-out reference set H: the first n test points (n = training set size). Null candidates: the remaining
  test points (as many as the pool, at most), fresh points of the same distribution that no attack produced;
  every statistic is computed on them exactly as on the attack's candidates, so each figure has its chance
  level measured beside it.
  """
  saved = wd.read_json(os.path.join(attack_workdir, "config.json"))
  _, ds, _ = train_job.load_run(saved["train_workdir"])
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
  d_tr, d_ho, ncc_tr, ncc_ho = distances(jnp.asarray(pool, tr.dtype), tr, ho)
  attack = statistics(d_tr, d_ho, ncc_tr, ncc_ho, quantile)
  nd = distances(jnp.asarray(null, tr.dtype), tr, ho) if null.shape[0] else None
  null_stats = statistics(*nd, quantile) if nd is not None else None
  summary = {"pool_size": int(pool.shape[0]), "n_train": n, "n_heldout": int(heldout.shape[0]),
             "n_null": int(null.shape[0]), "quantile": quantile, "attack": attack, "null": null_stats}
  summary["headline"] = _headline(attack, null_stats, int(pool.shape[0]), int(null.shape[0]), quantile)
  os.makedirs(out_dir, exist_ok=True)
  wd.write_json(os.path.join(out_dir, "config.json"), {"attack_workdir": os.path.abspath(attack_workdir),
                                                        "quantile": quantile})
  extra = {} if nd is None else dict(zip(("null_dist_train", "null_dist_heldout", "null_ncc_train",
                                          "null_ncc_heldout"), nd))
  wd.write_npz(os.path.join(out_dir, "distances.npz"), dist_train=d_tr, dist_heldout=d_ho, ncc_train=ncc_tr,
               ncc_heldout=ncc_ho, **extra)
  wd.write_json(os.path.join(out_dir, "summary.json"), summary)
  plotting.chance(d_tr, d_ho, ncc_tr, ncc_ho, nd, os.path.join(out_dir, "chance.png"))
  log(summary["headline"])
  return summary
