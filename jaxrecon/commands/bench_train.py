r"""Training and KKT-instrument benchmarks, written as JSON (and a PNG of eps_rel against wall time).

  python scripts/bench_train.py --out=bench/train.json --what=step_time,nnls
  python scripts/bench_train.py --out=bench/schedules.json --what=schedules --budget_s=600

step_time: ms per full-batch step, n=500, d=784, hidden 1000-1000, float32 and float64 (median of --repeats).
nnls: time of the best-multiplier fit (Gram + NNLS) for n=500 against 784-1000-1000-1, float32 and float64.
schedule_table: the default step rule against plain GD at its best fixed lr on four problems (the synthetic
default, a small sphere n=100 d=50 w=100, MNIST odd/even 500 and CIFAR-10 vehicles/animals 500 with
784/3072-1000-1000-1), exact eps_rel and the relaxed residual at --minutes of training wall time. GD's lr is
chosen from --gd_lrs_{sphere,images} by the exact eps_rel at the first mark (its run then continues); each
mark is a resume of the same workdir with a fresh wall-time budget, so KKT solves are not counted as training.
schedules: each --schedules entry trains the paper's synthetic setting (n=500 on the unit sphere in R^784,
width --width, float64) for --budget_s seconds; eps_rel, the relaxed residual and delta at every checkpoint against
the training wall time.
"""

import sys
import os
import shutil
import statistics

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.commands import cli
from jaxrecon.experiments import train as train_job
from jaxrecon import timing
from jaxrecon import data as data_lib
from jaxrecon.experiments import kkt as diagnostics
from jaxrecon import kkt
from jaxrecon import nets
from jaxrecon import train
from jaxrecon import report
from jaxrecon import workdir as wd

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench/train.json", "JSON output path.")
flags.DEFINE_list("what", ["step_time", "nnls"], "Benchmarks: step_time, nnls, schedules.")
flags.DEFINE_integer("repeats", 5, "Repeats for timings (median reported).")
flags.DEFINE_list("schedules", ["gd:lr=0.01", "normalized_gd:lr=0.01/lr_cap=10"],
                  "Schedules as optimizer:key=value/key=value (keys of TrainConfig).")
flags.DEFINE_float("budget_s", 600.0, "Training wall time per schedule.")
flags.DEFINE_integer("width", 1000, "Hidden width for the schedule study.")
flags.DEFINE_bool("relaxed", True, "Also solve the relaxed (kink-neighbourhood) residual at every checkpoint.")
flags.DEFINE_string("workdir", "bench/schedules", "Where the schedule runs keep their workdirs.")
flags.DEFINE_integer("n", 500, "Training points.")
flags.DEFINE_integer("d", 784, "Input dimension.")
flags.DEFINE_list("hidden", ["1000", "1000"], "Hidden widths for step_time and nnls.")
flags.DEFINE_list("problems", ["synthetic", "small_sphere", "mnist500", "cifar500"], "schedule_table problems.")
flags.DEFINE_list("minutes", ["1", "5", "10"], "schedule_table: training wall-time marks (minutes).")
flags.DEFINE_list("gd_lrs_sphere", ["0.3", "1", "3"], "schedule_table: GD lrs tried on unit-sphere data.")
flags.DEFINE_list("gd_lrs_images", ["0.01", "0.03", "0.1"], "schedule_table: GD lrs tried on images.")
flags.DEFINE_string("data_dir", None, "MNIST/CIFAR-10 root (default: $JAXRECON_DATA_DIR or ../shared/data).")


def _median_time(fn, repeats):
  times = timing.call_times(fn, repeats)
  return statistics.median(times), times


def bench_step_time(repeats, n, d, hidden):
  ds = data_lib.load(jax.random.key(0), data_lib.DataConfig(n=n, d=d, n_test=0))
  out = {}
  for dtype in ("float32", "float64"):
    cfg = train.TrainConfig(widths=hidden, init_scales=(1e-4,), optimizer="gd", lr=0.01, dtype=dtype)
    x, y = jnp.asarray(ds.x_train, dtype), jnp.asarray(ds.y_train)
    opt, normalized = train.make_optimizer(cfg)
    params = nets.init(jax.random.key(1), cfg.mlp(d, 1), jnp.dtype(dtype))
    state = train.TrainState(params, opt.init(params))
    runner = train.make_chunk_runner(train.make_train_step(cfg, opt, normalized))
    chunk = 32
    med, times = _median_time(lambda: runner(state, x, y, chunk), repeats)
    out[dtype] = {"ms_per_step": 1e3 * med / chunk, "runs_ms_per_step": [1e3 * t / chunk for t in times]}
    print(f"step {dtype}: {out[dtype]['ms_per_step']:.2f} ms/step")
  return out


def bench_nnls(repeats, n, d, hidden):
  ds = data_lib.load(jax.random.key(0), data_lib.DataConfig(n=n, d=d, n_test=0))
  out = {}
  for dtype in ("float32", "float64"):
    x, y = jnp.asarray(ds.x_train, dtype), jnp.asarray(ds.y_train)
    params = nets.init(jax.random.key(1), nets.MLPConfig(d, hidden, init_scales=None), jnp.dtype(dtype))
    fit = jax.jit(kkt.best_multipliers)
    med, times = _median_time(lambda: fit(params, x, y), repeats)
    res = fit(params, x, y)
    out[dtype] = {"seconds": med, "runs_s": times, "n_params": nets.num_params(params),
                  "support": int(jnp.sum(res.x > 0)), "converged": bool(res.converged)}
    print(f"nnls {dtype}: {med:.3f}s for {nets.num_params(params):,} params, n={n}")
  return out


def parse_schedule(spec):
  name, _, rest = spec.partition(":")
  kwargs = {"optimizer": name}
  for item in filter(None, rest.replace(";", "/").split("/")):
    k, v = item.split("=")
    kwargs[k] = None if v == "None" else float(v) if k in ("lr", "lr_cap", "momentum") else v
  return kwargs


def bench_schedules(budget_s, width, schedules, root, relaxed, n=500, d=784):
  results = {}
  for spec in schedules:
    kw = parse_schedule(spec)
    cfg = train.TrainConfig(data=data_lib.DataConfig(n=n, d=d, n_test=1000), widths=(width,),
                            steps=10 ** 7, max_wall_s=budget_s, log_every=500, relaxed=False, **kw)
    run_dir = os.path.join(root, spec.replace(":", "_").replace("/", "_").replace("=", ""))
    if os.path.exists(run_dir):
      shutil.rmtree(run_dir)
    print(f"== schedule {spec}: {budget_s:.0f}s")
    train_job.run(cfg, run_dir)
    diagnostics.run(run_dir, diagnostics.KKTConfig(relaxed=relaxed, batch_size=2))
    rows = wd.read_jsonl(os.path.join(run_dir, "kkt", "kkt.jsonl"))
    results[spec] = [{k: r[k] for k in ("step", "wall_s", "loss", "log10_loss", "eps_rel", "eps_rel_relaxed",
                                        "cert_eps_rel", "delta", "support_size", "kink_pairs")}
                     for r in rows]
  return results


def table_problem(name, data_dir):
  """TrainConfig keyword arguments of one schedule_table problem."""
  if name == "synthetic":
    return dict(data=data_lib.DataConfig(n=500, d=784, n_test=1000), widths=(1000,))
  if name == "small_sphere":
    return dict(data=data_lib.DataConfig(n=100, d=50, n_test=10), widths=(100,))
  sub = {"mnist500": ("mnist", "mnist"), "cifar500": ("cifar10", "cifar10-subset")}
  if name not in sub:
    raise ValueError(f"unknown problem {name!r}: synthetic, small_sphere, mnist500, cifar500")
  kind, folder = sub[name]
  return dict(data=data_lib.DataConfig(name=kind, n=500, n_test=100, data_dir=os.path.join(data_dir, folder)),
              widths=(1000, 1000))


def _run_to_marks(cfg_kw, run_dir, marks_s, used=0.0):
  """Trains to each cumulative wall-time mark (resuming), returning one row per mark."""
  rows = []
  for mark in marks_s:
    cfg = train.TrainConfig(steps=10 ** 7, max_wall_s=mark - used, log_every=50, relaxed=True, **cfg_kw)
    try:
      s = train_job.run(cfg, run_dir, log=lambda m: None)
    except train_job.TrainingDiverged as e:
      print(f"   {mark / 60:g} min: {e}", flush=True)
      rows.append({"minutes": mark / 60, "diverged": True, "log10_loss": float("nan"), "eps_rel": float("nan")})
      break
    used = s["wall_s"]
    rows.append({"minutes": mark / 60, "wall_s": s["wall_s"], "steps": s["steps"],
                 "log10_loss": s["final_log10_loss"], "train_acc": s["train_acc"], "eps_rel": s["eps_rel"],
                 "eps_rel_relaxed": s["eps_rel_relaxed"], "freed_pairs": s["freed_pairs"],
                 "relax_radius": s["relax_radius"], "relaxed_gap": s["relaxed_gap"]})
    print(f"   {mark / 60:g} min: step {s['steps']}, log10 loss {s['final_log10_loss']:.1f}, "
          f"eps_rel {s['eps_rel']:.4f}, relaxed {s['eps_rel_relaxed']:.4f}", flush=True)
  return rows


def bench_schedule_table(problems, minutes, gd_lrs, root, data_dir):
  marks = [60.0 * float(m) for m in minutes]
  default = train.TrainConfig()
  out = {}
  for prob in problems:
    base = table_problem(prob, data_dir)
    res = {}
    print(f"== {prob}: default {default.optimizer} lr {default.lr}", flush=True)
    res["default"] = {"optimizer": default.optimizer, "lr": default.lr,
                      "rows": _run_to_marks(base, os.path.join(root, prob, "default"), marks)}
    tried = {}
    lrs = gd_lrs["images" if prob in ("mnist500", "cifar500") else "sphere"]
    for lr in lrs:
      print(f"== {prob}: gd lr {lr} (selection, first mark)", flush=True)
      run_dir = os.path.join(root, prob, f"gd_{lr}")
      tried[lr] = (_run_to_marks(dict(base, optimizer="gd", lr=float(lr)), run_dir, marks[:1]), run_dir)
    finite = {lr: r for lr, (r, _) in tried.items() if np.isfinite(r[-1]["log10_loss"]) and np.isfinite(r[-1]["eps_rel"])}
    best = min(finite, key=lambda lr: finite[lr][-1]["eps_rel"]) if finite else lrs[0]
    print(f"== {prob}: gd best lr {best}, continuing", flush=True)
    first = tried[best][0]
    rows = first + _run_to_marks(dict(base, optimizer="gd", lr=float(best)), tried[best][1], marks[1:],
                                 used=first[-1]["wall_s"])
    res["gd_best"] = {"optimizer": "gd", "lr": float(best), "rows": rows,
                      "selection_first_mark": {lr: r[-1] for lr, (r, _) in tried.items()}}
    out[prob] = res
  return out


def plot_schedules(results, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for spec, rows in results.items():
    rows = [r for r in rows if r["wall_s"]]
    if not rows:
      continue
    t = [r["wall_s"] for r in rows]
    line, = axes[0].loglog(t, [r["eps_rel"] for r in rows], marker="o", ms=3, label=spec)
    axes[0].loglog(t, [r["eps_rel_relaxed"] for r in rows], ls="--", color=line.get_color())
    axes[1].semilogx(t, [r["log10_loss"] for r in rows], marker="o", ms=3, label=spec)
  axes[0].set_xlabel("training wall time (s)")
  axes[0].set_ylabel("eps_rel, exact (solid); relaxed residual (dashed)")
  axes[1].set_xlabel("training wall time (s)")
  axes[1].set_ylabel("log10 training loss")
  for ax in axes:
    ax.grid(True, which="both", alpha=0.3)
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  del argv
  out = {"machine": report.machine()}
  if os.path.exists(FLAGS.out):
    out.update(wd.read_json(FLAGS.out))
  hidden = tuple(int(h) for h in FLAGS.hidden)
  setup = {"n": FLAGS.n, "d": FLAGS.d, "hidden": hidden}
  if "step_time" in FLAGS.what:
    out["step_time"] = bench_step_time(FLAGS.repeats, FLAGS.n, FLAGS.d, hidden)
    out["step_time"]["setup"] = setup
  if "nnls" in FLAGS.what:
    out["nnls"] = bench_nnls(FLAGS.repeats, FLAGS.n, FLAGS.d, hidden)
    out["nnls"]["setup"] = setup
  if "schedule_table" in FLAGS.what:
    data_dir = FLAGS.data_dir or os.environ.get("JAXRECON_DATA_DIR", "../shared/data")
    out["schedule_table"] = bench_schedule_table(
        FLAGS.problems, FLAGS.minutes, {"sphere": FLAGS.gd_lrs_sphere, "images": FLAGS.gd_lrs_images},
        FLAGS.workdir, data_dir)
    out["schedule_table_setup"] = {"minutes": FLAGS.minutes, "dtype": "float64", "default": str(train.TrainConfig().optimizer),
                                   "gd_lrs": {"sphere": FLAGS.gd_lrs_sphere, "images": FLAGS.gd_lrs_images}}
  if "schedules" in FLAGS.what:
    out.setdefault("schedules", {}).update(bench_schedules(
        FLAGS.budget_s, FLAGS.width, FLAGS.schedules, FLAGS.workdir, FLAGS.relaxed,
        FLAGS.n, FLAGS.d))
    plot_schedules(out["schedules"], os.path.splitext(FLAGS.out)[0] + "_eps_vs_wall.png")
    out["schedules_setup"] = {"budget_s": FLAGS.budget_s, "width": FLAGS.width, "n": FLAGS.n,
                              "d": FLAGS.d, "dtype": "float64"}
  wd.write_json(FLAGS.out, out)
  print(f"wrote {FLAGS.out}")


def console():
  """The console entry point (python scripts/bench_train.py)."""
  cli.run(main, sys.modules[__name__])


if __name__ == "__main__":
  console()
