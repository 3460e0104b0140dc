"""`python scripts/bench_train.py --help`: its flags and docs are in jaxrecon/commands/bench_train.py."""

from jaxrecon.commands.bench_train import console

if __name__ == "__main__":
  console()
