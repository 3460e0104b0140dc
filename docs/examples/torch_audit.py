"""A PyTorch user's path to a jaxrecon audit, end to end (needs torch; jaxrecon itself does not).

  python docs/examples/torch_audit.py --out=runs/torch_example     # trains in torch, writes model.pt, data.npz
  jaxrecon-audit --model=runs/torch_example/model.pt --data=runs/torch_example/data.npz \
      --image_shape=28,28,1 --workdir=runs/torch_example/audit      # reads runs/torch_example/audit/report.md

The model is the kind the theory covers: nn.Linear layers with ReLU between, a bias on the first layer only,
one output trained with the logistic loss on labels -1 / +1 (odd / even digits). The data are the 20 MNIST
training digits and 1,000 test digits bundled with jaxrecon (no download), with the mean training image
subtracted as Haim et al. do; data.npz holds what the audit needs: x, y, mean and x_heldout (digits the model
did not see: the membership non-members and the recovery measure's competitors and null).
"""

import argparse
import os

import jax
import numpy as np
import torch

from jaxrecon import data as data_lib


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="runs/torch_example")
  parser.add_argument("--steps", type=int, default=3000)
  parser.add_argument("--width", type=int, default=64)
  args = parser.parse_args()
  ds = data_lib.load(jax.random.key(0), data_lib.DataConfig(name="mnist", n=20, n_test=1000,
                                                            data_dir=data_lib.BUNDLED))
  x = torch.tensor(np.asarray(ds.x_train), dtype=torch.float32)
  y = torch.tensor(np.asarray(ds.y_train), dtype=torch.float32)
  torch.manual_seed(0)
  model = torch.nn.Sequential(torch.nn.Linear(784, args.width, bias=True), torch.nn.ReLU(),
                              torch.nn.Linear(args.width, 1, bias=False))
  opt = torch.optim.SGD(model.parameters(), lr=0.05)
  for step in range(args.steps):
    loss = torch.nn.functional.softplus(-y * model(x)[:, 0]).mean()  # the logistic loss on +-1 labels
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 1000 == 0 or step == args.steps - 1:
      print(f"step {step}: loss {loss.item():.3g}")
  os.makedirs(args.out, exist_ok=True)
  torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
  np.savez(os.path.join(args.out, "data.npz"), x=np.asarray(ds.x_train), y=np.asarray(ds.y_train),
           mean=np.asarray(ds.mean), x_heldout=np.asarray(ds.x_test))
  print(f"wrote {args.out}/model.pt and {args.out}/data.npz")


if __name__ == "__main__":
  main()
