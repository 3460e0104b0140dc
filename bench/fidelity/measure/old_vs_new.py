import os
import sys, json
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
from jaxrecon import kkt
print(kkt.__file__)
z = np.load("/tmp/net40.npz")
x, y = jnp.asarray(z["x"]), jnp.asarray(z["y"])
p = ({"w": jnp.asarray(z["w1"])}, {"w": jnp.asarray(z["w2"])})
out = {}
for tol in [float(t) for t in sys.argv[2].split(",")]:
  if "oldtree" in kkt.__file__:
    for it, inner in ((1, 50), (3, 50)):
      r = jax.jit(lambda p: kkt.kkt_report(p, x, y, kink_tol=tol, clarke_iters=it, clarke_inner=inner))(p)
      out[f"{tol:g} old {it}x{inner}"] = round(float(r.eps_rel_clarke), 4)
  else:
    r = jax.jit(lambda p: kkt.kkt_report(p, x, y, kink_tol=tol))(p)
    out[f"{tol:g} new"] = [round(float(r.eps_rel_relaxed), 4), round(float(r.eps_rel_relaxed_lower), 4), int(r.relaxed_iters)]
  out["exact"] = round(float(r.eps_rel), 4)
print(json.dumps(out))
