"""`python scripts/bench_credit.py --help`: its flags and docs are in jaxrecon/commands/bench_credit.py."""

from jaxrecon.commands.bench_credit import console

if __name__ == "__main__":
  console()
