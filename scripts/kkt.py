"""`python scripts/kkt.py --help`: the jaxrecon-kkt command; its flags and docs are in jaxrecon/commands/kkt.py."""

from jaxrecon.commands.kkt import console

if __name__ == "__main__":
  console()
