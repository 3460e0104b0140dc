"""`python scripts/audit.py --help`: the jaxrecon-audit command; its flags and docs are in jaxrecon/commands/audit.py."""

from jaxrecon.commands.audit import console

if __name__ == "__main__":
  console()
