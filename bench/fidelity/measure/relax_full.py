"""The relaxed KKT residual over EVERY (point, neuron) pair near its kink (no scatter budget) at the last
checkpoint of a training run.

  python bench/fidelity/measure/relax_full.py TRAIN_WORKDIR   (e.g. runs/main/train)
"""
import time, sys
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jaxrecon.experiments import train as train_job
from jaxrecon import kkt
_, ds, ckpts = train_job.load_run(sys.argv[1])
step, params = ckpts[-1]
x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
kkt.RELAX_SCATTER_BUDGET = 1e30
n, w = x.shape[0], params[0]["w"].shape[1]
pairs = kkt.freed_pairs(params, x, 1e-3, max_pairs=n * w)
print("step", step, "valid pairs", int(pairs.valid.sum()), flush=True)
rep = jax.jit(lambda p: kkt.kkt_report(p, x, y, relaxed=False))(params)
print("exact eps_rel", float(rep.eps_rel), flush=True)
params, _ = kkt.normalize(params, x, y)
fn = jax.jit(kkt.relaxed_multipliers)
t = time.time()
fit = jax.block_until_ready(fn(params, x, y, rep.lam, pairs))
el = time.time() - t
theta = float(kkt.tree_norm(params))
print(f"all pairs: residual/theta {float(fit.residual)/theta:.4f}, lower {float(fit.lower)/theta:.4f}, iters {int(fit.iterations)}, gap {float(fit.gap):.3e}, {el:.1f} s (incl. compile)", flush=True)
