"""Exact eps_rel along training schedules on MNIST / CIFAR-10 odd-even / vehicles-animals with
784/3072-1000-1000-1, each schedule for BUDGET_S seconds of wall time.

  python bench/fidelity/measure/sched_real.py mnist|cifar10 BUDGET_S "opt:lr;..." [N [OUT.json]]

Data from $JAXRECON_DATA_DIR/{mnist,cifar10-subset} (default ../shared/data); JAXRECON_DATA_DIR=bundled reads
MNIST from the sample in the package. N default 500; OUT default bench/fidelity/schedules_<name><N>.json.
"""
import os
import sys, shutil, tempfile, time, json
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxrecon.experiments import train as train_job
from jaxrecon import train, data, kkt
name, budget = sys.argv[1], float(sys.argv[2])
root = os.environ.get("JAXRECON_DATA_DIR", "../shared/data")
ddir = root if root == data.BUNDLED else os.path.join(root, {"mnist": "mnist", "cifar10": "cifar10-subset"}[name])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 500
out = {}
for spec in sys.argv[3].split(";"):
  opt, lr = spec.split(":")
  wd = tempfile.mkdtemp(prefix="schr_")
  cfg = train.TrainConfig(data=data.DataConfig(name=name, n=n, n_test=100, data_dir=ddir), widths=(1000, 1000),
                          optimizer=opt, lr=float(lr), steps=10 ** 6, max_wall_s=budget, log_every=50, relaxed=False)
  t = time.time(); s = train_job.run(cfg, wd, log=lambda m: None); t = time.time() - t
  _, ds, ckpts = train_job.load_run(wd)
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  f = jax.jit(lambda p: kkt.kkt_report(p, x, y, relaxed=False))
  rows = []
  for st, p in ckpts:
    if st < 10: continue
    r = f(p)
    rows.append((st, round(float(r.eps_rel), 4), round(float(r.q_min), 4), round(float(train.log_loss_fn(p, x, y, "logistic")) / np.log(10), 1)))
  out[spec] = {"steps": s["steps"], "wall_s": round(s["wall_s"]), "final_log10_loss": s["final_log10_loss"], "rows": rows}
  print(name, spec, out[spec], flush=True)
  shutil.rmtree(wd, ignore_errors=True)
json.dump(out, open(sys.argv[5] if len(sys.argv) > 5 else f"bench/fidelity/schedules_{name}{n}.json", "w"), indent=1)
