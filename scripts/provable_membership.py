"""`python scripts/provable_membership.py --help`: the jaxrecon-provable-membership command; its flags and docs are in jaxrecon/commands/provable_membership.py."""

from jaxrecon.commands.provable_membership import console

if __name__ == "__main__":
  console()
