"""The no-information baselines (the mean image; the held-out digits) on MNIST odd/even 500 (first 250 per class)
under zero-padded and reflect-padded SSIM, min-max scaled and clipped.

  python bench/fidelity/measure/baseline.py OUT.json [N]   (data: $JAXRECON_DATA_DIR/mnist, or =bundled)
"""
import os
import json, sys
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
from jaxrecon import data
from jaxrecon.attack import evaluate as metrics
root = os.environ.get("JAXRECON_DATA_DIR", "../shared/data")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
ds = data.load(jax.random.key(0), data.DataConfig(name="mnist", n=n, n_test=2 * n, data_dir=(
    root if root == data.BUNDLED else os.path.join(root, "mnist"))))
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
