"""`python scripts/attack.py --help`: the jaxrecon-attack command; its flags and docs are in jaxrecon/commands/attack.py."""

from jaxrecon.commands.attack import console

if __name__ == "__main__":
  console()
