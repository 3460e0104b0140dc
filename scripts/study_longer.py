"""`python scripts/study_longer.py --help`: the jaxrecon-study-longer command; its flags and docs are in jaxrecon/commands/study_longer.py."""

from jaxrecon.commands.study_longer import console

if __name__ == "__main__":
  console()
