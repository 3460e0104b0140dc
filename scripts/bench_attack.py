"""`python scripts/bench_attack.py --help`: its flags and docs are in jaxrecon/commands/bench_attack.py."""

from jaxrecon.commands.bench_attack import console

if __name__ == "__main__":
  console()
