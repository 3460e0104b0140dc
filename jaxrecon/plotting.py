"""Every figure of every job, drawn without pyplot: no backend is chosen and no global figure state is touched.

Figures are `matplotlib.figure.Figure` objects written with `save`, so a job called from a notebook leaves the
notebook's backend and open figures as they were. Each function takes the numbers a job already has (rows of
its table, arrays) and a path; none computes anything a reader would need from the JSON.
"""

from __future__ import annotations

import numpy as np

from jaxrecon import margin_norms
from jaxrecon import workdir as wd
from jaxrecon.report import column


def subplots(nrows: int = 1, ncols: int = 1, figsize=(5.5, 3.8), squeeze: bool = True):
  """(figure, axes) as pyplot.subplots would return them, on a Figure owned by the caller."""
  from matplotlib.figure import Figure  # noqa: PLC0415 (matplotlib is only needed for figures)
  fig = Figure(figsize=figsize)
  return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save(fig, path: str, dpi: int = 110) -> str:
  """Writes the figure as PNG (atomically, like every file of a run folder) and returns the path."""
  fig.tight_layout()
  wd.atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"), "wb")
  return path


# ------------------------------------------------------------------------------------------ the attack


def _tile(v, shape, stretch: bool):
  """One image in [0, 1]: min-max stretched, or clipped (and then stretched if gray, as imshow would)."""
  img = np.asarray(v, np.float64).reshape(shape) if stretch else np.clip(v, 0, 1).reshape(shape)
  lo, hi = img.min(), img.max()
  img = (img - lo) / (hi - lo) if (stretch or shape[-1] == 1) and hi > lo else img
  return img[..., 0] if shape[-1] == 1 else img


def pairs(ds, pool, train_idx, cand_idx, scores, good, path: str, title: str, cols: int = 10,
          scale: str = "minmax") -> None:
  """Haim et al.'s layout, one mosaic image: each reconstruction pool[cand_idx[i]] (min-max or clipped) above
  the training image train_idx[i], titled scores[i] (green where good[i]), in the order given."""
  shape, mean = tuple(ds.image_shape), np.asarray(ds.mean - ds.offset)[None, :]
  recon = np.asarray(pool)[np.asarray(cand_idx, np.int64)] + mean
  truth = np.asarray(ds.x_train)[np.asarray(train_idx, np.int64)] + mean
  groups, (h, w), pad = max(int(np.ceil(len(train_idx) / cols)), 1), shape[:2], 2
  row_h, cell_w = 2 * h + 3 * pad + h // 3, w + pad  # a pair and the gap above it for its score
  mosaic = np.ones((groups * row_h, cols * cell_w) + (() if shape[-1] == 1 else (3,)))
  fig, ax = subplots(figsize=(1.2 * cols, 2.5 * groups))
  for i in range(len(train_idx)):
    top, left = (i // cols) * row_h + h // 3 + pad, (i % cols) * cell_w
    mosaic[top:top + h, left:left + w] = _tile(recon[i], shape, scale == "minmax")
    mosaic[top + h + pad:top + 2 * h + pad, left:left + w] = _tile(truth[i], shape, False)
    ax.text(left + w / 2, top - 1, f"{scores[i]:.2f}", ha="center", va="bottom", fontsize=7,
            color="green" if good[i] else "black")
  ax.imshow(mosaic, cmap="gray" if shape[-1] == 1 else None, vmin=0, vmax=1, interpolation="nearest").axes.axis("off")
  fig.suptitle(title, fontsize=9)
  save(fig, path, dpi=100)


def curves(curves: dict, ylabel: str, path: str, *, threshold=None, baselines: dict = None) -> None:
  """Reconstruction curves (each training point's best value, sorted), the baselines no attack needs dashed,
  and the threshold a good reconstruction must pass; the legend inside the axes."""
  fig, ax = subplots(figsize=(5.5, 3.8))
  for name, curve in curves.items():
    ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
  for name, curve in (baselines or {}).items():
    ax.plot(np.arange(1, len(curve) + 1), curve, ls="--", lw=1, label=f"{name} (no attack)")
  if threshold is not None:
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"good: {threshold:g}")
  if len(curves) + len(baselines or {}) > 1 or threshold is not None:
    ax.legend(fontsize=7, loc="best")
  ax.set_xlabel("training points, sorted")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  save(fig, path, dpi=100)


# ------------------------------------------------------------------------------------- KKT residuals


def kkt_residuals(rows: list, path: str, title: str = "") -> None:
  steps = np.array([r["step"] for r in rows], float)
  fig, axes = subplots(1, 2, figsize=(10, 4))
  ax = axes[0]
  tol = rows[0].get("kink_tol", float("nan"))
  for key, label in [("eps_rel", "eps_rel (exact, relu'(0)=0)"), ("eps_rel_relaxed", f"relaxed residual (kink_tol {tol:g}; not eps at theta)"),
                     ("cert_eps_rel", "certificate"), ("delta", "delta")]:
    vals = np.array([r[key] if r[key] is not None else np.nan for r in rows], float)
    vals = np.where(vals > 0, vals, np.nan)
    ax.loglog(steps, vals, marker="o", ms=3, label=label)
  out = [r["step"] for r in rows if r.get("q_min", 1.0) <= 0]
  if out:  # no max-margin problem yet: residuals there use a stand-in scale
    ax.axvspan(min(out) / 1.3, max(out) * 1.3, color="0.88", zorder=0, label="data not separated (q_min <= 0)")
  ax.set_xlabel("training step")
  ax.set_title("KKT residuals (normalized scale)")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  ax = axes[1]
  ax.semilogx(steps, [r["log10_loss"] for r in rows], marker="o", ms=3, color="k")
  ax.set_xlabel("training step")
  ax.set_ylabel("log10 training loss")
  ax.grid(True, which="both", alpha=0.3)
  fig.suptitle(title)
  save(fig, path)


# ---------------------------------------------------------------------------------- No Prior, No Leakage


def split_exact(rows, summary, last, path):
  fig, ax = subplots(figsize=(5.5, 3.8))
  d = [r["distance_over_radius"] for r in rows]
  ax.plot(d, [r["eps_rel"] for r in rows], "o-", label="eps_rel (re-fitted multipliers)")
  ax.plot(d, [r["eps_rel_transported"] for r in rows], "x--", label="eps_rel (transported multipliers)")
  ax.plot(d, [max(r["delta"], 1e-300) for r in rows], "s-", label="delta")
  ax.plot(d, [r["attack_stat_rel"] for r in rows], "^-", label="attack stationarity / ||theta||^2")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("distance of the split set to the training set / data radius")
  ax.set_title(f"exact splits (width {summary['width']} < d = {summary['d']}), step {last['step']}", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  save(fig, path, dpi=100)


def split_approx(table, curves_last, config, summary, path):
  fig, (a1, a2) = subplots(1, 2, figsize=(10, 3.8))
  ap, grid, eps0, step = curves_last
  for r in ap:
    a1.plot(grid, r["eps_rel_curve"], label=r["direction"])
  a1.axhline((1 + config.tol) * eps0, color="k", ls=":", lw=1, label=f"true set x {1 + config.tol:g}")
  a1.set_xscale("log")
  a1.set_yscale("log")
  a1.set_xlabel("split magnitude / data radius")
  a1.set_ylabel("exact eps_rel (transported multipliers)")
  a1.set_title(f"one support point split, step {step} (width {summary['width']}, d = {summary['d']})",
               fontsize=9)
  a1.legend(fontsize=8)
  a1.grid(alpha=0.3)
  steps = [t["step"] for t in table]
  for kind in config.directions:
    a2.plot(steps, [max(t["approx_by_direction"][kind], 1e-300) for t in table], "o-", label=kind)
  a2.plot(steps, [t["approx_safe_over_radius"] for t in table], "k--", label="pattern-safe, both ways")
  out = [t["step"] for t in table if not t["separated"]]
  if out:
    a2.axvspan(min(out) / 1.5, max(out) * 1.2, color="0.85", zorder=0, label="not separated (q_min <= 0)")
  a2.set_xscale("log")
  a2.set_yscale("log")
  a2.set_xlabel("training step")
  a2.set_ylabel(f"largest split within {config.tol:.0%} / radius")
  a2.grid(alpha=0.3)
  a2.legend(fontsize=8)
  save(fig, path, dpi=100)


def chance(d_tr, d_ho, ncc_tr, ncc_ho, nd, path):
  fig, axes = subplots(1, 2, figsize=(10, 3.6))
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
  save(fig, path, dpi=100)


# -------------------------------------------------------------------------------------- provable attacks


def univariate(rows, path):
  fig, ax = subplots(figsize=(5.5, 3.8))
  for pattern in sorted({r["pattern"] for r in rows}):
    rs = [r for r in rows if r["pattern"] == pattern]
    ax.scatter([r["eps_rel"] for r in rs], [r["known_fraction"] for r in rs], s=14, label=pattern)
  ax.axhline(0.25, color="k", ls="--", lw=1, label="guarantee 1/4")
  ax.set_xscale("log")
  ax.set_xlabel("eps_rel (exact KKT residual) of the trained net")
  ax.set_ylabel("fraction of candidates that are training points")
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  save(fig, path, dpi=100)


def membership(rows, config, path):
  fig, axes = subplots(1, 4, figsize=(17, 3.6))
  score = "y Phi" if getattr(config, "criterion", "absolute") == "signed" else "|Phi|"
  for name in config.datasets:
    rs = sorted([r for r in rows if r["dataset"] == name], key=lambda r: r["d"])
    d = [r["d"] for r in rs]
    axes[0].plot(d, [r["known_members_within_10pct"] for r in rs], "o-", label=name)
    axes[1].plot(d, [r["known_fresh_reaching_margin"] for r in rs], "o-", label=name)
    axes[2].plot(d, [r["known_auc"] for r in rs], "o-", label=f"{name} (m known)")
    axes[2].plot(d, [r["leaked_auc"] for r in rs], "x--", label=f"{name} (m leaked)")
    if "test_acc" in rs[0]:
      axes[3].plot(d, [r["test_acc"] for r in rs], "o-", label=name)
  axes[0].set_ylabel("training points within 10% of m")
  axes[1].set_ylabel(f"fresh points with {score} >= 0.9 m")
  axes[2].set_ylabel(f"AUC ({score} / m)")
  axes[3].set_ylabel("test accuracy (fresh points)")
  for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("d")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(f"membership inference, n = {config.n}, width {config.width}", fontsize=9)
  save(fig, path, dpi=100)


# ------------------------------------------------------------------------------- the attack studies


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
