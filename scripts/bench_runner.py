"""`python scripts/bench_runner.py --help`: its flags and docs are in jaxrecon/commands/bench_runner.py."""

from jaxrecon.commands.bench_runner import console

if __name__ == "__main__":
  console()
