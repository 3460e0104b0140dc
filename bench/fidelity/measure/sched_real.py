import os
import sys, shutil, time, json
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxrecon.experiments import train as train_job
from jaxrecon import train, data, kkt
name, budget = sys.argv[1], float(sys.argv[2])
ddir = {"mnist": os.path.join(os.environ.get("JAXRECON_DATA_DIR", "../shared/data"), "mnist"), "cifar10": os.path.join(os.environ.get("JAXRECON_DATA_DIR", "../shared/data"), "cifar10-subset")}[name]
out = {}
for spec in sys.argv[3].split(";"):
  opt, lr = spec.split(":")
  wd = f"/tmp/schr_{name}_{opt}_{lr}"
  shutil.rmtree(wd, ignore_errors=True)
  cfg = train.TrainConfig(data=data.DataConfig(name=name, n=500, n_test=100, data_dir=ddir), widths=(1000, 1000),
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
json.dump(out, open(f"bench/fidelity/schedules_{name}500.json", "w"), indent=1)
