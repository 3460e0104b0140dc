"""`python scripts/provable_univariate.py --help`: the jaxrecon-provable-univariate command; its flags and docs are in jaxrecon/commands/provable_univariate.py."""

from jaxrecon.commands.provable_univariate import console

if __name__ == "__main__":
  console()
