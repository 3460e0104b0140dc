"""`python scripts/main.py --help`: the jaxrecon-main command; its flags and docs are in jaxrecon/commands/main.py."""

from jaxrecon.commands.main import console

if __name__ == "__main__":
  console()
