"""`python scripts/study_radius.py --help`: the jaxrecon-study-radius command; its flags and docs are in jaxrecon/commands/study_radius.py."""

from jaxrecon.commands.study_radius import console

if __name__ == "__main__":
  console()
