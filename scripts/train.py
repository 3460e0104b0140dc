"""`python scripts/train.py --help`: the jaxrecon-train command; its flags and docs are in jaxrecon/commands/train.py."""

from jaxrecon.commands.train import console

if __name__ == "__main__":
  console()
