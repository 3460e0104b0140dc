import os
"""Before/after of the surrogate ReLU fix on a trained 784-1000-1000-1 net with a first-layer bias (MNIST odd/even,
100 images), the released MNIST attack configuration (init 1.742e-3, x lr 0.2821, lambda_min 0.4153,
alpha 19.21), one shared init, float64: losses over 10 steps and the relative difference of the x-gradients."""
import json, sys, shutil
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxrecon.experiments import train as train_job
from jaxrecon import attack, data, nets, train
wd = "/tmp/surr_mnist100"
shutil.rmtree(wd, ignore_errors=True)
cfg = train.TrainConfig(data=data.DataConfig(name="mnist", n=100, n_test=0, data_dir=os.path.join(os.environ.get("JAXRECON_DATA_DIR", "../shared/data"), "mnist")),
                        widths=(1000, 1000), first_bias=True, lr=0.3, steps=300, log_every=300, relaxed=False)
s = train_job.run(cfg, wd, log=lambda m: None)
_, ds, ckpts = train_job.load_run(wd)
params = ckpts[-1][1]
hyper = attack.Hyper(np.array([1.742e-3]), np.array([0.2821]), np.array([0.4153]), np.array([19.21]), np.array([0]), np.array([1.0]))

@jax.custom_jvp
def old(z, alpha):
  return jax.nn.relu(z)
old.defjvp(lambda p, t: (jax.nn.relu(p[0]), jax.nn.sigmoid(p[1] * p[0]) * t[0]))
new = attack.surrogate_relu
m = 200
c = attack.AttackConfig(m=m, steps=10, log_every=1, dtype="float64")
out = {"train": {"final_log10_loss": s["final_log10_loss"], "train_acc": s["train_acc"], "eps_rel": s["eps_rel"]}}
key = jax.random.key(2)
st = attack.sweep._init_fn(m, 784, c, jnp.float64)(key, attack.Hyper(*(jnp.asarray(v) for v in hyper)))
x0, lam0 = st.x[0], st.lam[0]
y = attack.candidate_labels(m)
grads = {}
for name, fn in (("before", old), ("after", new)):
  attack.surrogate_relu = fn
  attack.make_sweep_runner.cache_clear()
  res = attack.run_sweep(key, params, hyper, 784, c, log=None)
  out[name] = [round(r["loss"][0], 4) for r in res.history]
  terms = {}
  for l in range(3):  # x-gradient of each layer's stationarity term
    def term(xx, l=l):
      g = attack.surrogate_weighted_gradient(params, xx, lam0, y, 19.21)
      return sum(jnp.sum(jnp.square(params[l][k] - g[l][k])) for k in params[l])
    terms[l] = jax.grad(term)(x0)
  grads[name] = terms
  print(name, out[name], flush=True)
attack.surrogate_relu = new
out["x_grad_rel_diff_by_layer_term"] = {
    f"layer{l + 1}": float(jnp.linalg.norm(grads["before"][l] - grads["after"][l]) / jnp.linalg.norm(grads["after"][l]))
    for l in range(3)}
print(out["x_grad_rel_diff_by_layer_term"])
json.dump(out, open(sys.argv[1], "w"), indent=1)
