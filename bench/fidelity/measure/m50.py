import os
import jax, jax.numpy as jnp, numpy as np, json
jax.config.update("jax_enable_x64", True)
from jaxrecon import kkt
z = np.load("/tmp/net40.npz")
x, y = jnp.asarray(z["x"]), jnp.asarray(z["y"])
p = ({"w": jnp.asarray(z["w1"])}, {"w": jnp.asarray(z["w2"])})
out = {}
for tol in (1e-6, 1e-4, 1e-3):
  r = jax.jit(lambda p: kkt.kkt_report(p, x, y, kink_tol=tol))(p)
  out[f"{tol:g}"] = {k: round(float(getattr(r, k)), 5) for k in ("eps_rel", "eps_rel_relaxed", "eps_rel_relaxed_lower", "relax_radius", "relaxed_gap")}
  out[f"{tol:g}"].update(freed=int(r.freed_pairs), within=int(r.kink_pairs), iters=int(r.relaxed_iters))
  print(tol, out[f"{tol:g}"], flush=True)
json.dump(out, open("bench/fidelity/relaxed_mnist50.json", "w"), indent=1)
