"""`python scripts/bench_flagship.py --help`: its flags and docs are in jaxrecon/commands/bench_flagship.py."""

from jaxrecon.commands.bench_flagship import console

if __name__ == "__main__":
  console()
