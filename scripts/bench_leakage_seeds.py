"""`python scripts/bench_leakage_seeds.py --help`: its flags and docs are in jaxrecon/commands/bench_leakage_seeds.py."""

from jaxrecon.commands.bench_leakage_seeds import console

if __name__ == "__main__":
  console()
