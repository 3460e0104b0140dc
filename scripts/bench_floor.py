"""`python scripts/bench_floor.py --help`: its flags and docs are in jaxrecon/commands/bench_floor.py."""

from jaxrecon.commands.bench_floor import console

if __name__ == "__main__":
  console()
