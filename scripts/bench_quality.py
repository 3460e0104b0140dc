"""`python scripts/bench_quality.py --help`: its flags and docs are in jaxrecon/commands/bench_quality.py."""

from jaxrecon.commands.bench_quality import console

if __name__ == "__main__":
  console()
