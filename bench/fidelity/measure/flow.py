"""Exact and relaxed residuals along plain GD at several step sizes (the gradient-flow proxy).

  python bench/fidelity/measure/flow.py N D W STEPS LR1,LR2 [OUT.json]   (OUT default /tmp/flow_N_D_W.json)
"""
import sys, shutil, tempfile, time, json
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jaxrecon.experiments import train as train_job
from jaxrecon import train, data, kkt
n, d, w, steps = [int(a) for a in sys.argv[1:5]]
res = {}
for lr in [float(v) for v in sys.argv[5].split(",")]:
  wd = tempfile.mkdtemp(prefix="flow_")
  cfg = train.TrainConfig(data=data.DataConfig(name="sphere", n=n, d=d, n_test=10), widths=(w,),
                          optimizer="gd", lr=lr, steps=steps, log_every=steps, relaxed=False)
  t = time.time(); train_job.run(cfg, wd, log=lambda s: None); t = time.time() - t
  _, ds, ckpts = train_job.load_run(wd)
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  f = jax.jit(lambda p: kkt.kkt_report(p, x, y, kink_tol=1e-3))
  rows = []
  for s, p in ckpts:
    if s < 10: continue
    r = f(p)
    rows.append({"step": s, "flow_time": s * lr, "eps_rel": float(r.eps_rel), "relaxed_1e-3": float(r.eps_rel_relaxed),
                 "q_min": float(r.q_min), "exact_kink_pairs": int(r.exact_kink_pairs), "kink_pairs_1e-3": int(r.kink_pairs),
                 "loss": float(train.loss_fn(p, x, y, "logistic"))})
    print(lr, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
  res[lr] = rows
  shutil.rmtree(wd, ignore_errors=True)
json.dump(res, open(sys.argv[6] if len(sys.argv) > 6 else f"/tmp/flow_{n}_{d}_{w}.json", "w"), indent=1)
