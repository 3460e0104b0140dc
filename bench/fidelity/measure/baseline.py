import os
"""Before/after of the SSIM change: the no-information baselines on MNIST odd/even 500 (first 250 per class)."""
import json, sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxrecon import data
from jaxrecon.attack import evaluate as metrics
ds = data.load(jax.random.key(0), data.DataConfig(name="mnist", n=500, n_test=1000, data_dir=os.path.join(os.environ.get("JAXRECON_DATA_DIR", "../shared/data"), "mnist")))
x = jnp.asarray(ds.x_train); mean = jnp.asarray(ds.mean); shape = tuple(ds.image_shape)
out = {}
for pad in ("zero", "reflect"):
  for scale in ("minmax", "clip"):
    ev_mean = metrics.evaluate(x, jnp.zeros((1, x.shape[1])), mean, shape, scale=scale, padding=pad)
    ev_ho = metrics.evaluate(x, jnp.asarray(ds.x_test), mean, shape, scale=scale, padding=pad)
    out[f"{pad}/{scale}"] = {"mean_image_n_good": ev_mean.n_good, "mean_image_top10": round(ev_mean.mean_top10_ssim, 4),
                             "heldout_n_good": ev_ho.n_good, "heldout_top10": round(ev_ho.mean_top10_ssim, 4)}
    print(pad, scale, out[f"{pad}/{scale}"], flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
