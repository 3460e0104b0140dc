"""The attack studies' figures (radius, training length, offset, sphere, longer, time to quality, leakage), drawn
as `plotting` draws every figure: on a pyplot-free `Figure`, written with `plotting.save`."""

from __future__ import annotations

import numpy as np

from jaxrecon import margin_norms
from jaxrecon.plotting import save, subplots
from jaxrecon.report import column


def _axes(n: int, width: float = 4.6):
  fig, axes = subplots(1, n, figsize=(width * n, 3.6))
  return fig, list(np.atleast_1d(axes))


def radius_study(rows: list, key_metric: str, data_radius: float, vec: bool, path: str) -> None:
  fig, (a1, a2) = _axes(2)
  rs = [r["radius"] for r in rows]
  a1.plot(rs, column(rows, "best_final_loss"), "o-", label="best configuration")
  a1.plot(rs, column(rows, "median_final_loss"), "s--", label="median configuration")
  a1.set_ylabel("final attack loss")
  if np.any(column(rows, "best_final_loss") > 0):  # a fully diverged study has nothing for a log axis
    a1.set_yscale("log")
  a1.legend(fontsize=8)
  a2.plot(rs, column(rows, key_metric) / (data_radius if vec else 1.0), "o-")
  a2.set_ylabel("mean distance of the best 5 / data radius" if vec else "top-10 mean SSIM (clipped)")
  for a in (a1, a2):
    a.set_xscale("log", base=2)
    a.set_xlabel("initialization radius / data radius (no box prior)")
    a.grid(alpha=0.3)
  save(fig, path)


def training_length_study(rows: list, vec: bool, path: str) -> None:
  fig, (a1, a2) = _axes(2)
  steps = [r["step"] for r in rows]
  if vec:
    a1.plot(steps, column(rows, "n_close"), "o-", label="training points with a close candidate")
  else:
    a1.plot(steps, column(rows, "clip_n_good_beating_heldout"), "o-", label="SSIM > 0.4, above held-out")
    a1.plot(steps, column(rows, "clip_n_good_beating_mean_image"), "s-", label="SSIM > 0.4, above the mean image")
    a1.plot(steps, column(rows, "n_good_ssim_0.4"), "^-", label="SSIM > 0.4 (min-max)")
  a1.set_ylabel("good reconstructions")
  a1.legend(fontsize=7)
  a2.plot(steps, [r["eps_rel"] for r in rows], "o-", label="eps_rel")
  a2.plot(steps, [max(r["delta"], 1e-300) for r in rows], "s-", label="delta")
  a2.set_yscale("log")
  a2.legend(fontsize=8)
  for a in (a1, a2):
    a.set_xscale("log")
    a.set_xlabel("training step")
    a.grid(alpha=0.3)
  save(fig, path)


def offset_study(rows: list, vec: bool, path: str) -> None:
  """Reconstruction quality against the offset, one line per prior weight, and how wrong the box prior is
  for the true set (training points outside it; the true set's own prior penalty beside the attack's best
  loss)."""
  fig, (a1, a2, a3) = _axes(3)
  for w in sorted({r.get("prior_weight", 1.0) for r in rows}):
    rs = [r for r in rows if r.get("prior_weight", 1.0) == w]
    offs = [r["offset"] for r in rs]
    tag = f" (prior weight {w:g})"
    if vec:
      a1.plot(offs, column(rs, "mean_best5_dist"), "o-", label="best-5 distance" + tag)
      a2.plot(offs, column(rs, "n_close"), "o-", label="close candidates" + tag)
    else:
      a1.plot(offs, column(rs, "clip_mean_top10_ssim"), "o-", label="clipped" + tag)
      a1.plot(offs, column(rs, "mean_top10_ssim"), "s--", label="min-max" + tag)
      a2.plot(offs, column(rs, "clip_n_good_beating_heldout"), "o-", label="above held-out" + tag)
      a2.plot(offs, column(rs, "clip_n_good_beating_mean_image"), "s--", label="above the mean image" + tag)
    a3.plot(offs, column(rs, "best_final_loss"), "o-", label="attack's best final loss" + tag)
  first = [r for r in rows if r.get("prior_weight", 1.0) == rows[0].get("prior_weight", 1.0)]
  a3.plot([r["offset"] for r in first], column(first, "true_prior_penalty"), "k^-", label="true set's prior penalty")
  a1.set_ylabel("mean distance of the best 5" if vec else "top-10 mean SSIM")
  a2.set_ylabel("training points with a close candidate" if vec else "SSIM > 0.4 (clipped)")
  a3.set_ylabel("loss")
  if np.nanmax(np.concatenate([column(rows, "best_final_loss"), column(rows, "true_prior_penalty")])) > 0:
    a3.set_yscale("symlog", linthresh=1e-3)
  for a in (a1, a2, a3):
    a.set_xlabel("secret offset added to every pixel")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
  save(fig, path)


def sphere_study(rows: list, per, null_per, fields, path: str) -> None:
  """Three panels (the configurations that did not diverge): nearest-training-point distances (the authors'
  histogram) per init shift with the no-attack null; best-5 NCC with a training point against the same with held-out points, one dot per configuration
  (the diagonal is chance); margin ratio against norm ratio of every candidate (homogeneity puts a candidate
  along a training direction at any scale: the ratio grows with the norm)."""
  f = {name: i for i, name in enumerate(fields)}
  fig, (a1, a2, a3) = _axes(3)
  shifts = np.asarray([r["shift"] for r in rows])
  dist = per[:, f["dist"]]
  finite = np.isfinite(dist)
  hi = max(np.nanmax(np.where(finite, dist, np.nan)) if finite.any() else 1.0, np.max(null_per[f["dist"]]))
  lo = max(min(np.nanmin(np.where(finite, dist, np.nan)) if finite.any() else 1.0, np.min(null_per[f["dist"]])),
           1e-6)
  bins = np.geomspace(lo, hi * 1.01, 50)
  for s in sorted(set(shifts.tolist())):
    v = dist[shifts == s].ravel()
    v = v[np.isfinite(v)]
    a1.hist(v, bins, alpha=0.5, weights=np.full(v.size, 1.0 / max(v.size, 1)), label=f"init shift {s:g}")
  nd = null_per[f["dist"]]
  a1.hist(nd, bins, histtype="step", color="k", weights=np.full(nd.size, 1.0 / nd.size),
          label="held-out points (null)")
  a1.set_xscale("log")
  a1.set_yscale("log")
  a1.set_ylabel("fraction of candidates")
  a1.set_xlabel("distance of a candidate to its nearest training point")
  a1.legend(fontsize=7)
  tr, ho = column(rows, "best5_ncc_train"), column(rows, "best5_ncc_heldout")
  sc = a2.scatter(ho, tr, c=np.log10(column(rows, "init_scale")), s=14, cmap="viridis")
  fig.colorbar(sc, ax=a2, label="log10 init scale")
  null_tr = np.mean(np.sort(null_per[f["ncc_train"]])[-5:])
  null_ho = np.mean(np.sort(null_per[f["ncc_heldout"]])[-5:])
  a2.scatter([null_ho], [null_tr], marker="x", color="r", s=40, label="null (held-out points)")
  lim = [np.nanmin(np.concatenate([ho, tr, [null_ho]])) - 0.02, 1.0]
  a2.plot(lim, lim, "k--", lw=1)
  a2.set_xlabel("best-5 NCC with held-out points")
  a2.set_ylabel("best-5 NCC with training points")
  a2.legend(fontsize=7)
  mr, nr = per[:, f["margin_ratio"]].ravel(), per[:, f["norm_ratio"]].ravel()
  ok = np.isfinite(mr) & np.isfinite(nr) & (mr > 0) & (nr > 0)
  a3.scatter(nr[ok], mr[ok], s=2, alpha=0.3, label="candidates")
  a3.scatter(null_per[f["norm_ratio"]], null_per[f["margin_ratio"]], s=4, color="k", label="held-out points")
  a3.axhline(1.0, color="r", lw=0.8)
  a3.set_xscale("log")
  a3.set_yscale("log")
  a3.set_xlabel("||x|| / data radius")
  a3.set_ylabel("|Phi(x)| / q_min")
  a3.legend(fontsize=7)
  for a in (a1, a2, a3):
    a.grid(alpha=0.3)
  save(fig, path)


def longer_study(rows: list, path: str) -> None:
  """Recovery against the exact eps_rel and against delta per schedule (bootstrap intervals over seeds; dashed:
  the same with held-out points, the chance level), the basin test's drift, and the split reach with the
  first layer's part outside the data span against the step."""
  fig, axes = subplots(2, 2, figsize=(11, 7.5))
  (a1, a2), (a3, a4) = axes
  marks = {"fast": "o", "gd": "s"}
  for schedule in ("fast", "gd"):
    rs = [r for r in rows if r["schedule"] == schedule]
    if not rs:
      continue
    eps = np.asarray([r["eps_rel"] for r in rs])
    delta = np.asarray([r["delta"] for r in rs])
    steps = np.asarray([r["step"] for r in rs])
    for ax, xs in ((a1, eps), (a2, delta)):
      for attack, color in (("prior_free", "C0"), ("weak_prior", "C1")):
        v = np.asarray([r[attack].get("best5_ncc_train", np.nan) for r in rs])
        ci = np.asarray([r[attack].get("best5_ncc_train_ci95", (np.nan, np.nan)) for r in rs])
        ax.errorbar(xs, v, yerr=[v - ci[:, 0], ci[:, 1] - v], fmt=marks[schedule] + "-", color=color, ms=4,
                    label=f"{attack.replace('_', ' ')} ({schedule})")
        ax.plot(xs, [r[attack].get("best5_ncc_heldout", np.nan) for r in rs], marks[schedule] + ":", color=color,
                ms=3, alpha=0.6)
    a3.plot(eps, [r["basin"].get("drift", np.nan) for r in rs], marks[schedule] + "-", label=f"drift ({schedule})")
    a4.plot(steps, [np.nan if r.get("split_reach_over_radius") is None else r["split_reach_over_radius"]
                    for r in rs], marks[schedule] + "-", label=f"split reach / r ({schedule})")
    a4.plot(steps, [r["perp_w1_fraction"] for r in rs], marks[schedule] + "--", label=f"||P_perp W1|| / ||theta|| ({schedule})")
  a1.set_xlabel("exact eps_rel of the checkpoint")
  a2.set_xlabel("delta of the checkpoint")
  a2.set_xscale("log")
  for a in (a1, a2):
    a.set_ylabel("best-5 NCC with training points (dotted: held-out)")
  a3.set_xlabel("exact eps_rel of the checkpoint")
  a3.set_ylabel("basin test: median drift / data radius")
  a3.set_yscale("log")
  a4.set_xlabel("training step")
  a4.set_xscale("log")
  a4.set_yscale("log")
  for a in (a1, a2, a3, a4):
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
  save(fig, path)


def time_to_quality(rows: list, paths: list, nulls: dict, keys: list, path: str) -> None:
  """Each quality count against wall time (log), one panel per level (two rows), a line per path; the
  no-attack baselines' counts dashed."""
  cols = (len(keys) + 1) // 2
  fig, axes = subplots(2, cols, figsize=(3.6 * cols, 6.6), squeeze=False)
  axes = list(axes.ravel())
  for a, key in zip(axes, keys):
    for p in paths:
      pr = [r for r in rows if r["path"] == p]
      if pr:
        a.plot([r["wall_s"] for r in pr], [r[key] for r in pr], "o-" if p == "reference" else ".-", label=p,
               lw=2 if p in ("reference", "fast") else 1)
    for name, style in (("mean_image", ":"), ("heldout", "--")):
      if key in nulls.get(name, {}):
        a.axhline(nulls[name][key], color="gray", ls=style, lw=1, label=f"{name.replace('_', ' ')} alone")
    a.set_xscale("log")
    a.set_xlabel("wall time (s)")
    a.set_title(key.replace("_", " "), fontsize=9)
    a.grid(alpha=0.3)
  for a in axes[len(keys):]:
    a.axis("off")
  axes[0].set_ylabel("training images")
  axes[cols].set_ylabel("training images")
  axes[0].legend(fontsize=7)
  save(fig, path)


def leakage_study(rows: list, kind: str, key: str, path: str) -> None:
  """Per training recipe: the stationarity residuals of each norm's max-margin problem (left) and the attack's
  headline count per attack target (right; vector data: the chance level as a black tick)."""
  names = [r["recipe"] for r in rows]
  pos = np.arange(len(rows))
  fig, (a, b) = subplots(1, 2, figsize=(11, 3.8))
  res = [("eps_rel", "l2 (eps_rel)")] + [(f"eps_{k}", n.label) for k, n in margin_norms.NORMS.items()
                                          if k != "l2"] + [("wd_residual", "weight-decay stationarity")]
  w = 0.8 / len(res)
  for i, (k, label) in enumerate(res):
    vals = [np.nan if r.get(k) is None else r[k] for r in rows]
    a.bar(pos + (i - (len(res) - 1) / 2) * w, vals, w, label=label)
  a.set_xticks(pos, names, rotation=20)
  a.set_ylabel("stationarity residual (0 = KKT point)")
  a.set_ylim(0, 1.05)
  a.legend(fontsize=7)
  attacks = sorted({k[len("attack_"):] for r in rows for k in r if k.startswith("attack_")})
  w = 0.8 / max(len(attacks), 1)
  for i, t in enumerate(attacks):
    x = pos + (i - (len(attacks) - 1) / 2) * w
    vals = [r[f"attack_{t}"][key] if f"attack_{t}" in r else np.nan for r in rows]
    b.bar(x, vals, w, label=f"target {t}")
    if kind == "vectors":
      chance = [r[f"attack_{t}"].get("chance_n_close", np.nan) if f"attack_{t}" in r else np.nan for r in rows]
      b.plot(x, chance, "k_", ms=10)
  b.set_xticks(pos, names, rotation=20)
  b.set_ylabel(key.replace("_", " "))
  b.set_title("training points reconstructed", fontsize=9)
  b.legend(fontsize=7)
  save(fig, path)


def optim_bench(runs: list, table: dict, path: str) -> None:
  """The optimizer benchmark: each method's best-lr validation curve against steps and wall time, per task,
  and SUMO's moment condition numbers when they were logged."""
  tasks = sorted(table)
  conds = any(r.get("log10_moment_cond_median") for r in runs)
  ncols = 3 if conds else 2
  fig, axes = subplots(len(tasks), ncols, figsize=(5 * ncols, 3.5 * len(tasks)), squeeze=False)
  for i, task in enumerate(tasks):
    for m, row in table[task].items():
      r = next(r for r in runs if r["task"] == task and r["method"] == m and r["lr"] == row["best_lr"])
      v = [float(np.mean(c["val"])) for c in r["curve"]]
      axes[i, 0].plot([c["step"] for c in r["curve"]], v, label=f"{m} lr={row['best_lr']:g}")
      axes[i, 1].plot([c["wall_s"] for c in r["curve"]], v, label=m)
      if conds and r.get("log10_moment_cond_median"):
        axes[i, 2].plot([c["step"] for c in r["curve"][1:]], r["log10_moment_cond_median"], label=m)
    axes[i, 0].set_xlabel("step")
    axes[i, 1].set_xlabel("wall time (s, all seeds)")
    for ax in axes[i, :2]:
      ax.set_ylabel(f"{task} validation loss")
    if conds:
      axes[i, 2].set_xlabel("step")
      axes[i, 2].set_ylabel("log10 condition number of the moment\n(median over matrices, mean over seeds)")
    for ax in axes[i]:
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8)
  save(fig, path, dpi=100)
