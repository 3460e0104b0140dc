"""Exact eps_rel of training schedules on a sphere task at steps 10, 100, 1,000, 5,000, 10,000, 20,000.

  python bench/fidelity/measure/sched.py N D W STEPS "opt:lr;opt:lr"
"""
import sys, shutil, tempfile, time
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jaxrecon.experiments import train as train_job
from jaxrecon import train, data, kkt
n, d, w, steps = [int(a) for a in sys.argv[1:5]]
out = {}
for spec in sys.argv[5].split(";"):
  opt, lr = spec.split(":")
  wd = tempfile.mkdtemp(prefix="sched_")
  cfg = train.TrainConfig(data=data.DataConfig(name="sphere", n=n, d=d, n_test=10), widths=(w,),
                          optimizer=opt, lr=float(lr), steps=steps, log_every=steps, relaxed=False)
  t = time.time(); train_job.run(cfg, wd, log=lambda s: None); t = time.time() - t
  _, ds, ckpts = train_job.load_run(wd)
  x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
  f = jax.jit(lambda p: kkt.kkt_report(p, x, y, relaxed=False))
  res = {s: round(float(f(p).eps_rel), 4) for s, p in ckpts if s in (10, 100, 1000, 5000, 10000, 20000)}
  print(spec, f"{t:.0f}s", res, flush=True)
  shutil.rmtree(wd, ignore_errors=True)
