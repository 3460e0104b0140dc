"""Every figure of every job (the attack studies' in `plotting_studies`), drawn without pyplot: no backend is
chosen and no global figure state is touched.

Figures are `matplotlib.figure.Figure` objects written with `save`, so a job called from a notebook leaves the
notebook's backend and open figures as they were. Each function takes the numbers a job already has (rows of
its table, arrays) and a path; none computes anything a reader would need from the JSON.
"""

from __future__ import annotations

import numpy as np

from jaxrecon import workdir as wd


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


def roc(fpr, tpr, auc: float, n_members: int, n_nonmembers: int, label: str, path: str) -> None:
  """A membership ROC on log-log axes with the chance diagonal; the x range starts at half of 1 / n_nonmembers."""
  fig, ax = subplots(figsize=(4.2, 4.0))
  ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
  ax.plot([1e-4, 1], [1e-4, 1], "k:", lw=1, label="chance")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlim(1.0 / max(n_nonmembers, 1) / 2, 1)
  ax.set_xlabel(f"false positive rate ({n_nonmembers} non-members)")
  ax.set_ylabel(f"true positive rate ({n_members} members)")
  ax.legend(fontsize=7, loc="lower right")
  ax.grid(alpha=0.3)
  save(fig, path)
