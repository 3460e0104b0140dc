r"""Optimizer benchmark: AdamW, optax Muon, optax GaLore and SUMO on two small CPU tasks, written as JSON + PNG.

  python scripts/bench_optim.py --out=bench/optim.json

Tasks (no download): a character-level transformer on the text of CPython's `pydoc_data.topics`, and a small
MLP predicting the next character from the previous --context characters (embedded and concatenated). Each
(method, learning rate) trains --seeds seeds in one compiled call (vmap) and records the validation loss every
--eval_every steps against steps and wall time. Embeddings, output heads and vectors go to AdamW in Muon and
SUMO (and stay unprojected in GaLore), as `optax.contrib.muon` does. Muon and SUMO use the consistent-RMS
shape factor 0.2 sqrt(max(m, n)) so one learning-rate grid fits all methods. Optimizer-state memory is
counted from the state pytree. Math-library threads are pinned to one (OMP/OpenBLAS/MKL) before JAX starts:
multithreaded LAPACK makes small SVDs on 2 cores much slower.
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_v, "1")

import json  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from optax import contrib  # noqa: E402

from jaxrecon.commands import cli  # noqa: E402
from jaxrecon.optim import sumo  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench/optim.json", "JSON output (a PNG is written beside it).")
flags.DEFINE_list("tasks", ["transformer", "mlp"], "transformer, mlp.")
flags.DEFINE_list("methods", ["adamw", "muon", "galore", "sumo"],
                  "Optimizers: adamw, muon, galore, sumo, and SUMO's ablations sumo_ns (Newton-Schulz, Muon's 5 "
                  "steps, in the same subspace), sumo_notransport, sumo_ns_notransport.")
flags.DEFINE_list("lrs", ["1e-3", "3e-3", "1e-2"], "Learning-rate grid (the same for every method).")
flags.DEFINE_integer("seeds", 3, "Seeds per configuration (vmapped).")
flags.DEFINE_integer("steps", 400, "Training steps.")
flags.DEFINE_integer("eval_every", 50, "Validation every this many steps.")
flags.DEFINE_integer("batch", 32, "Sequences per batch.")
flags.DEFINE_integer("seq", 64, "Sequence length (transformer).")
flags.DEFINE_integer("context", 8, "Context characters (MLP).")
flags.DEFINE_integer("d_model", 64, "Transformer width.")
flags.DEFINE_integer("layers", 2, "Transformer layers.")
flags.DEFINE_integer("heads", 4, "Attention heads.")
flags.DEFINE_integer("hidden", 256, "MLP hidden width.")
flags.DEFINE_integer("rank", 8, "Rank of GaLore and SUMO.")
flags.DEFINE_integer("refresh", 100, "Subspace refresh period of GaLore and SUMO.")
flags.DEFINE_bool("extend", False, "Add these runs to those already in --out (e.g. more learning rates).")


def load_text():
  from pydoc_data import topics  # noqa: PLC0415
  text = "".join(topics.topics[k] for k in sorted(topics.topics))
  chars = sorted(set(text))
  ids = np.searchsorted(np.array(chars), np.array(list(text)))
  split = int(0.9 * ids.size)
  return ids[:split].astype(np.int32), ids[split:].astype(np.int32), len(chars)


def rms_norm(x, g):
  return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * g


def transformer_init(key, vocab, d, layers, seq):
  ks = iter(jax.random.split(key, 4 + 4 * layers))
  n = lambda shape, fan_in: jax.random.normal(next(ks), shape) / np.sqrt(fan_in)
  p = {"embed": n((vocab, d), 1.0) * 0.02, "pos": n((seq, d), 1.0) * 0.02, "ln_f": jnp.ones(d),
       "head": n((d, vocab), d)}
  for l in range(layers):
    p[f"layer{l}"] = {"qkv": n((d, 3 * d), d), "out": n((d, d), d), "mlp_in": n((d, 4 * d), d),
                  "mlp_out": n((4 * d, d), 4 * d), "ln1": jnp.ones(d), "ln2": jnp.ones(d)}
  return p


def transformer_loss(p, tokens, heads):
  x_ids, y_ids = tokens[:, :-1], tokens[:, 1:]
  t = x_ids.shape[1]
  h = p["embed"][x_ids] + p["pos"][None, :t]
  mask = jnp.tril(jnp.ones((t, t), bool))
  for name in sorted(k for k in p if k.startswith("layer")):
    lp = p[name]
    a = rms_norm(h, lp["ln1"][None, None, :])
    q, k, v = jnp.split(a @ lp["qkv"], 3, axis=-1)
    b, _, d = q.shape
    split = lambda z: z.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)
    q, k, v = split(q), split(k), split(v)
    att = (q @ k.transpose(0, 1, 3, 2)) / np.sqrt(d // heads)
    att = jax.nn.softmax(jnp.where(mask[None, None], att, -1e9), axis=-1)
    o = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    h = h + o @ lp["out"]
    a = rms_norm(h, lp["ln2"][None, None, :])
    h = h + jax.nn.gelu(a @ lp["mlp_in"]) @ lp["mlp_out"]
  logits = rms_norm(h, p["ln_f"][None, None, :]) @ p["head"]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_ids))


def mlp_init(key, vocab, context, hidden):
  ks = jax.random.split(key, 4)
  d = 16
  return {"embed": jax.random.normal(ks[0], (vocab, d)) * 0.1,
          "w1": jax.random.normal(ks[1], (context * d, hidden)) / np.sqrt(context * d), "b1": jnp.zeros(hidden),
          "w2": jax.random.normal(ks[2], (hidden, hidden)) / np.sqrt(hidden), "b2": jnp.zeros(hidden),
          "head": jax.random.normal(ks[3], (hidden, vocab)) / np.sqrt(hidden)}


def mlp_loss(p, tokens, heads):
  del heads
  x_ids, y = tokens[:, :-1], tokens[:, -1]
  h = p["embed"][x_ids].reshape(x_ids.shape[0], -1)
  h = jax.nn.relu(h @ p["w1"] + p["b1"][None, :])
  h = jax.nn.relu(h @ p["w2"] + p["b2"][None, :])
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(h @ p["head"], y))


ADAM_KEYS = ("embed", "pos", "head")


def is_adam(path, leaf):
  names = [getattr(k, "key", str(k)) for k in path]
  return leaf.ndim != 2 or any(n in ADAM_KEYS for n in names)


def make_optimizer(method, lr, params):
  labels = jax.tree_util.tree_map_with_path(lambda pth, x: "adam" if is_adam(pth, x) else "matrix", params)
  if method == "adamw":
    return optax.adamw(lr, weight_decay=0.0)
  if method == "muon":
    dims = jax.tree_util.tree_map(lambda lab: contrib.MuonDimensionNumbers() if lab == "matrix" else None,
                                  labels)
    return contrib.muon(lr, muon_weight_dimension_numbers=dims, consistent_rms=0.2)
  if method == "galore":
    dims = jax.tree_util.tree_map(lambda lab: contrib.GaLoreDimensionNumbers() if lab == "matrix" else None,
                                  labels)
    return contrib.galore(lr, rank=FLAGS.rank, update_proj_gap=FLAGS.refresh, weight_dimension_numbers=dims)
  if method in SUMO_VARIANTS:
    lab = jax.tree_util.tree_map(lambda s: "sumo" if s == "matrix" else "adam", labels)
    ortho, transport = SUMO_VARIANTS[method]
    return sumo.sumo(lr, rank=FLAGS.rank, refresh_every=FLAGS.refresh, param_labels=lab, key=jax.random.key(0),
                     orthogonalizer=ortho, transport_moment=transport)
  raise ValueError(method)


# SUMO and its ablations: (orthogonalizer, moment transport on refresh).
SUMO_VARIANTS = {"sumo": ("svd", True), "sumo_ns": ("newton_schulz", True), "sumo_notransport": ("svd", False),
                 "sumo_ns_notransport": ("newton_schulz", False)}

# Two-sided 95% Student t quantiles by degrees of freedom (for intervals over a few seeds).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval95(values):
  """(mean, half-width of the 95% t interval) over seeds."""
  v = np.asarray(values, np.float64)
  if v.size < 2:
    return float(v.mean()), float("nan")
  return float(v.mean()), float(T95.get(v.size - 1, 1.96) * v.std(ddof=1) / np.sqrt(v.size))


def moment_conditions(state):
  """Condition numbers of every SUMO moment matrix (seeds x matrices) of a SUMO variant's state."""
  st = state.inner_states["sumo"].inner_state[0]
  conds = [np.asarray(sumo.condition_numbers(m)).reshape(m.shape[0], -1)
           for m in jax.tree_util.tree_leaves(st.moment)]
  return np.concatenate(conds, axis=1) if conds else None


def batches(key, data, n, length):
  starts = jax.random.randint(key, (n,), 0, data.shape[0] - length)
  return jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (length,)))(starts)


def run_config(task, method, lr, train_ids, val_ids, vocab):
  length = FLAGS.seq + 1 if task == "transformer" else FLAGS.context + 1
  if task == "transformer":
    init = lambda k: transformer_init(k, vocab, FLAGS.d_model, FLAGS.layers, FLAGS.seq)
    loss_fn = transformer_loss
  else:
    init = lambda k: mlp_init(k, vocab, FLAGS.context, FLAGS.hidden)
    loss_fn = mlp_loss
  keys = jax.random.split(jax.random.key(0), FLAGS.seeds)
  params = jax.vmap(init)(keys)
  one = jax.tree_util.tree_map(lambda a: a[0], params)
  opt = make_optimizer(method, lr, one)
  state = jax.vmap(opt.init)(params)
  state_bytes = sum(int(x.size) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(opt.init(one))
                    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating))
  per_matrix = None
  if method in SUMO_VARIANTS:  # measured SUMO state per matrix against (m + n) r
    st = opt.init(one).inner_states["sumo"].inner_state[0]
    per_matrix = []
    for (path, q), mom in zip(jax.tree_util.tree_leaves_with_path(st.basis), jax.tree_util.tree_leaves(st.moment)):
      m_, r_ = q.shape[-2:]
      n_ = mom.shape[-1]
      per_matrix.append({"param": jax.tree_util.keystr(path), "m": int(m_), "n": int(n_), "r": int(r_),
                         "state_numbers": int(q.size + mom.size), "m_plus_n_times_r": int((m_ + n_) * r_)})
  train_d, val_d = jnp.asarray(train_ids), jnp.asarray(val_ids)
  val = batches(jax.random.key(123), val_d, 8 * FLAGS.batch, length)

  def step(p, s, k):
    toks = batches(k, train_d, FLAGS.batch, length)
    g = jax.grad(loss_fn)(p, toks, FLAGS.heads)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  def segment(p, s, seeds_keys, start):
    def body(carry, i):
      p, s = carry
      ks = jax.vmap(lambda k: jax.random.fold_in(k, start + i))(seeds_keys)
      return jax.vmap(step)(p, s, ks), None
    (p, s), _ = jax.lax.scan(body, (p, s), jnp.arange(FLAGS.eval_every))
    return p, s

  seg = jax.jit(segment)
  evaluate = jax.jit(jax.vmap(lambda p: loss_fn(p, val, FLAGS.heads)))
  seed_keys = jax.random.split(jax.random.key(1), FLAGS.seeds)
  curve = [{"step": 0, "wall_s": 0.0, "val": np.asarray(evaluate(params)).tolist()}]
  jax.block_until_ready(seg(params, state, seed_keys, 0))  # compile outside the clock
  wall = 0.0
  for start in range(0, FLAGS.steps, FLAGS.eval_every):
    t = time.perf_counter()
    params, state = seg(params, state, seed_keys, start)
    jax.block_until_ready(params)
    wall += time.perf_counter() - t
    v = np.asarray(evaluate(params))
    row = {"step": start + FLAGS.eval_every, "wall_s": wall, "val": v.tolist()}
    conds = moment_conditions(state) if method in SUMO_VARIANTS else None
    if conds is not None:  # log10 of the moments' condition numbers: median and max over matrices, per seed
      lc = np.log10(np.where(np.isfinite(conds), conds, np.nan))
      row["log10_moment_cond_median"] = np.nanmedian(lc, axis=1).tolist()
      row["log10_moment_cond_max"] = np.nanmax(lc, axis=1).tolist()
    curve.append(row)
  return {"task": task, "method": method, "lr": lr, "curve": curve, "state_bytes": state_bytes,
          "sumo_state_per_matrix": per_matrix,
          "final_val_mean": float(np.mean(curve[-1]["val"])), "final_val_std": float(np.std(curve[-1]["val"])),
          "final_val_ci95": interval95(curve[-1]["val"])[1],
          "log10_moment_cond_median": ([float(np.nanmean(c["log10_moment_cond_median"])) for c in curve[1:]]
                                       if method in SUMO_VARIANTS else None),
          "wall_s": wall, "ms_per_step": 1e3 * wall / FLAGS.steps}


def val_at_wall(run, wall):
  ws = [c["wall_s"] for c in run["curve"]]
  vs = [float(np.mean(c["val"])) for c in run["curve"]]
  return float(np.interp(wall, ws, vs))


def paired(runs, task, base="sumo"):
  """Each SUMO ablation against `base`, both at their best learning rates: the per-seed difference of the
  final validation loss (seeds share initialization and batches, so the difference is paired), mean and 95%
  interval; and at the same learning rate as base's best."""
  rs = [r for r in runs if r["task"] == task and np.isfinite(r["final_val_mean"])]
  best = {m: min((r for r in rs if r["method"] == m), key=lambda r: r["final_val_mean"])
          for m in {r["method"] for r in rs}}
  if base not in best:
    return {}
  out = {}
  for m in sorted(set(best) & set(SUMO_VARIANTS) - {base}):
    d = np.asarray(best[m]["curve"][-1]["val"]) - np.asarray(best[base]["curve"][-1]["val"])
    same = [r for r in rs if r["method"] == m and r["lr"] == best[base]["lr"]]
    entry = {"best_lr": best[m]["lr"], "base_best_lr": best[base]["lr"], "diff_mean_ci95": interval95(d)}
    if same:
      entry["same_lr_diff_mean_ci95"] = interval95(np.asarray(same[0]["curve"][-1]["val"])
                                                   - np.asarray(best[base]["curve"][-1]["val"]))
    out[f"{m} - {base}"] = entry
  return out


def summarize(runs):
  table = {}
  for task in sorted({r["task"] for r in runs}):
    rs = [r for r in runs if r["task"] == task]
    best = {}
    for m in sorted({r["method"] for r in rs}):
      cand = [r for r in rs if r["method"] == m and np.isfinite(r["final_val_mean"])]
      if cand:
        best[m] = min(cand, key=lambda r: r["final_val_mean"])
    wall = min(b["wall_s"] for b in best.values())
    table[task] = {m: {"best_lr": b["lr"], "val_at_equal_steps": b["final_val_mean"],
                       "val_std": b["final_val_std"], "val_ci95": interval95(b["curve"][-1]["val"])[1],
                       "val_at_equal_wall": val_at_wall(b, wall),
                       "equal_wall_s": wall, "ms_per_step": b["ms_per_step"], "state_bytes": b["state_bytes"]}
                   for m, b in best.items()}
  return table


def plot(runs, table, path):
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  tasks = sorted(table)
  conds = any(r.get("log10_moment_cond_median") for r in runs)
  fig, axes = plt.subplots(len(tasks), 3 if conds else 2, figsize=(15 if conds else 10, 3.5 * len(tasks)),
                           squeeze=False)
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
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  train_ids, val_ids, vocab = load_text()
  runs = []
  if FLAGS.extend and os.path.exists(FLAGS.out):
    with open(FLAGS.out) as f:
      runs = json.load(f)["runs"]
  for task in FLAGS.tasks:
    for method in FLAGS.methods:
      for lr in (float(x) for x in FLAGS.lrs):
        t = time.time()
        r = run_config(task, method, lr, train_ids, val_ids, vocab)
        runs.append(r)
        print(f"{task:<11s} {method:<6s} lr={lr:<7g} val {r['final_val_mean']:.4f} +- {r['final_val_std']:.4f}  "
              f"{r['ms_per_step']:.1f} ms/step  state {r['state_bytes'] / 1e6:.3f} MB  ({time.time() - t:.0f}s)",
              flush=True)
  table = summarize(runs)
  out = {"backend": jax.default_backend(), "cpu_count": os.cpu_count(),
         "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")},
         "flags": {k: FLAGS[k].value for k in ("steps", "seeds", "batch", "seq", "context", "d_model", "layers",
                                               "hidden", "rank", "refresh", "lrs")},
         "vocab": vocab, "train_chars": int(train_ids.size), "table": table,
         "sumo_ablation": {task: paired(runs, task) for task in table}, "runs": runs}
  os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump(out, f, indent=1)
  plot(runs, table, os.path.splitext(FLAGS.out)[0] + ".png")
  for task, rows in table.items():
    for m, row in rows.items():
      print(f"{task:<11s} {m:<6s} best lr {row['best_lr']:g}: val {row['val_at_equal_steps']:.4f} at equal "
            f"steps, {row['val_at_equal_wall']:.4f} at {row['equal_wall_s']:.1f}s; state "
            f"{row['state_bytes'] / 1e6:.3f} MB")
  for task, rows in out["sumo_ablation"].items():
    for name, e in rows.items():
      m, h = e["diff_mean_ci95"]
      print(f"{task:<11s} {name}: final val difference {m:+.4f} +- {h:.4f} (95%, paired over seeds)")
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  cli.run(main)
