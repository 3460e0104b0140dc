"""The optimizer benchmark and SUMO's ablation: AdamW, optax Muon, optax GaLore, SUMO and its variants on two
small CPU tasks (no download), as a job: `run(config, out)` writes the JSON table and its figure.

Tasks: a character-level transformer on the text of CPython's `pydoc_data.topics`, and a small MLP predicting
the next character from the previous `context` characters (embedded and concatenated). Each (method, learning
rate) trains `seeds` seeds in one compiled call (vmap) and records the validation loss every `eval_every` steps
against steps and wall time. Embeddings, output heads and vectors go to AdamW in Muon and SUMO (and stay
unprojected in GaLore), as `optax.contrib.muon` does. Muon and SUMO use the consistent-RMS shape factor
0.2 sqrt(max(m, n)) so one learning-rate grid fits all methods. Optimizer-state memory is counted from the
state pytree. The SUMO ablation pairs each variant with SUMO at their best learning rates over seeds (the seeds
share initialization and batches), with a Student t interval over seeds. Command: scripts/bench_optim.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib

from jaxrecon import plotting_studies
from jaxrecon import stats
from jaxrecon import validation
from jaxrecon.optim import sumo


@dataclasses.dataclass(frozen=True)
class OptimBenchConfig:
  """The benchmark's sizes and grid.

  Attributes:
    tasks: transformer, mlp.
    methods: adamw, muon, galore, sumo, and SUMO's ablations (sumo_ns, sumo_notransport, sumo_ns_notransport).
    lrs: Learning-rate grid (the same for every method).
    seeds: Seeds per configuration (vmapped).
    steps: Training steps.
    eval_every: Validation every this many steps.
    batch: Sequences per batch.
    seq: Sequence length (transformer).
    context: Context characters (MLP).
    d_model: Transformer width.
    layers: Transformer layers.
    heads: Attention heads.
    hidden: MLP hidden width.
    rank: Rank of GaLore and SUMO.
    refresh: Subspace refresh period of GaLore and SUMO.
  """
  tasks: tuple = ("transformer", "mlp")
  methods: tuple = ("adamw", "muon", "galore", "sumo")
  lrs: tuple = (1e-3, 3e-3, 1e-2)
  seeds: int = 3
  steps: int = 400
  eval_every: int = 50
  batch: int = 32
  seq: int = 64
  context: int = 8
  d_model: int = 64
  layers: int = 2
  heads: int = 4
  hidden: int = 256
  rank: int = 8
  refresh: int = 100

  def validate(self) -> None:
    """Raises ValueError naming the field that cannot run."""
    validation.each_one_of(self, "tasks", ("transformer", "mlp"))
    validation.each_one_of(self, "methods", ("adamw", "muon", "galore", *SUMO_VARIANTS))
    validation.each_positive(self, "lrs")
    validation.at_least(self, 1, "seeds", "steps", "eval_every")
    validation.check(self.steps % self.eval_every == 0,
                     f"steps must be a positive multiple of eval_every; got {self.steps}, {self.eval_every}")


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


def make_optimizer(method: str, lr: float, params, rank: int = 8, refresh: int = 100):
  """The optimizer `method` (adamw, muon, galore, sumo or a SUMO ablation) at learning rate lr; embeddings,
  heads and vectors go to AdamW (Muon, SUMO) or stay unprojected (GaLore)."""
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
    return contrib.galore(lr, rank=rank, update_proj_gap=refresh, weight_dimension_numbers=dims)
  if method in SUMO_VARIANTS:
    lab = jax.tree_util.tree_map(lambda s: "sumo" if s == "matrix" else "adam", labels)
    ortho, transport = SUMO_VARIANTS[method]
    return sumo.sumo(lr, rank=rank, refresh_every=refresh, param_labels=lab, key=jax.random.key(0),
                     orthogonalizer=ortho, transport_moment=transport)
  raise ValueError(f"unknown method {method!r}; expected adamw, muon, galore or one of {', '.join(SUMO_VARIANTS)}")


# SUMO and its ablations: (orthogonalizer, moment transport on refresh).
SUMO_VARIANTS = {"sumo": ("svd", True), "sumo_ns": ("newton_schulz", True), "sumo_notransport": ("svd", False),
                 "sumo_ns_notransport": ("newton_schulz", False)}

def moment_conditions(state):
  """Condition numbers of every SUMO moment matrix (seeds x matrices) of a SUMO variant's state."""
  st = state.inner_states["sumo"].inner_state[0]
  conds = [np.asarray(sumo.condition_numbers(m)).reshape(m.shape[0], -1)
           for m in jax.tree_util.tree_leaves(st.moment)]
  return np.concatenate(conds, axis=1) if conds else None


def batches(key, data, n, length):
  starts = jax.random.randint(key, (n,), 0, data.shape[0] - length)
  return jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (length,)))(starts)


def run_config(config: OptimBenchConfig, task: str, method: str, lr: float, train_ids, val_ids, vocab: int) -> dict:
  """One (task, method, lr): config.seeds seeds trained in one compiled call, validated every eval_every steps."""
  length = config.seq + 1 if task == "transformer" else config.context + 1
  if task == "transformer":
    init = lambda k: transformer_init(k, vocab, config.d_model, config.layers, config.seq)
    loss_fn = transformer_loss
  else:
    init = lambda k: mlp_init(k, vocab, config.context, config.hidden)
    loss_fn = mlp_loss
  keys = jax.random.split(jax.random.key(0), config.seeds)
  params = jax.vmap(init)(keys)
  one = jax.tree_util.tree_map(lambda a: a[0], params)
  opt = make_optimizer(method, lr, one, config.rank, config.refresh)
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
  val = batches(jax.random.key(123), val_d, 8 * config.batch, length)

  def step(p, s, k):
    toks = batches(k, train_d, config.batch, length)
    g = jax.grad(loss_fn)(p, toks, config.heads)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  def segment(p, s, seeds_keys, start):
    def body(carry, i):
      p, s = carry
      ks = jax.vmap(lambda k: jax.random.fold_in(k, start + i))(seeds_keys)
      return jax.vmap(step)(p, s, ks), None
    (p, s), _ = jax.lax.scan(body, (p, s), jnp.arange(config.eval_every))
    return p, s

  seg = jax.jit(segment)
  evaluate = jax.jit(jax.vmap(lambda p: loss_fn(p, val, config.heads)))
  seed_keys = jax.random.split(jax.random.key(1), config.seeds)
  curve = [{"step": 0, "wall_s": 0.0, "val": np.asarray(evaluate(params)).tolist()}]
  jax.block_until_ready(seg(params, state, seed_keys, 0))  # compile outside the clock
  wall = 0.0
  for start in range(0, config.steps, config.eval_every):
    t = time.perf_counter()
    params, state = seg(params, state, seed_keys, start)
    jax.block_until_ready(params)
    wall += time.perf_counter() - t
    v = np.asarray(evaluate(params))
    row = {"step": start + config.eval_every, "wall_s": wall, "val": v.tolist()}
    conds = moment_conditions(state) if method in SUMO_VARIANTS else None
    if conds is not None:  # log10 of the moments' condition numbers: median and max over matrices, per seed
      lc = np.log10(np.where(np.isfinite(conds), conds, np.nan))
      row["log10_moment_cond_median"] = np.nanmedian(lc, axis=1).tolist()
      row["log10_moment_cond_max"] = np.nanmax(lc, axis=1).tolist()
    curve.append(row)
  return {"task": task, "method": method, "lr": lr, "curve": curve, "state_bytes": state_bytes,
          "sumo_state_per_matrix": per_matrix,
          "final_val_mean": float(np.mean(curve[-1]["val"])), "final_val_std": float(np.std(curve[-1]["val"])),
          "final_val_ci95": stats.t_interval(curve[-1]["val"])[1],
          "log10_moment_cond_median": ([float(np.nanmean(c["log10_moment_cond_median"])) for c in curve[1:]]
                                       if method in SUMO_VARIANTS else None),
          "wall_s": wall, "ms_per_step": 1e3 * wall / config.steps}


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
    entry = {"best_lr": best[m]["lr"], "base_best_lr": best[base]["lr"], "diff_mean_ci95": stats.t_interval(d)}
    if same:
      entry["same_lr_diff_mean_ci95"] = stats.t_interval(np.asarray(same[0]["curve"][-1]["val"])
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
                       "val_std": b["final_val_std"], "val_ci95": stats.t_interval(b["curve"][-1]["val"])[1],
                       "val_at_equal_wall": val_at_wall(b, wall),
                       "equal_wall_s": wall, "ms_per_step": b["ms_per_step"], "state_bytes": b["state_bytes"]}
                   for m, b in best.items()}
  return table


def run(config: OptimBenchConfig, out: str, runs: tuple = (), log: Callable = print) -> dict:
  """Runs every (task, method, lr) of `config` and writes `out` (JSON) and its figure (the same name, .png).

  Args:
    config: the grid and sizes.
    out: the JSON's path.
    runs: earlier runs to keep beside these (the `runs` list of an earlier JSON: `--extend`).
    log: progress lines.

  Returns:
    The JSON's dict: the best learning rate per method and task (`table`), SUMO's paired ablation
    (`sumo_ablation`), every run's curve (`runs`), the machine.
  """
  config.validate()
  train_ids, val_ids, vocab = load_text()
  runs = list(runs)
  for task in config.tasks:
    for method in config.methods:
      for lr in config.lrs:
        t = time.time()
        r = run_config(config, task, method, float(lr), train_ids, val_ids, vocab)
        runs.append(r)
        log(f"{task:<11s} {method:<6s} lr={lr:<7g} val {r['final_val_mean']:.4f} +- {r['final_val_std']:.4f}  "
            f"{r['ms_per_step']:.1f} ms/step  state {r['state_bytes'] / 1e6:.3f} MB  ({time.time() - t:.0f}s)")
  table = summarize(runs)
  res = {"backend": jax.default_backend(), "cpu_count": os.cpu_count(),
         "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")},
         "flags": {k: getattr(config, k) for k in ("steps", "seeds", "batch", "seq", "context", "d_model", "layers",
                                                   "hidden", "rank", "refresh", "lrs")},
         "vocab": vocab, "train_chars": int(train_ids.size), "table": table,
         "sumo_ablation": {task: paired(runs, task) for task in table}, "runs": runs}
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(res, f, indent=1)
  plotting_studies.optim_bench(runs, table, os.path.splitext(out)[0] + ".png")
  for task, rows in table.items():
    for m, row in rows.items():
      log(f"{task:<11s} {m:<6s} best lr {row['best_lr']:g}: val {row['val_at_equal_steps']:.4f} at equal "
          f"steps, {row['val_at_equal_wall']:.4f} at {row['equal_wall_s']:.1f}s; state "
          f"{row['state_bytes'] / 1e6:.3f} MB")
  for task, rows in res["sumo_ablation"].items():
    for name, e in rows.items():
      m, h = e["diff_mean_ci95"]
      log(f"{task:<11s} {name}: final val difference {m:+.4f} +- {h:.4f} (95%, paired over seeds)")
  log(f"wrote {out}")
  return res
