"""`python scripts/study_leakage.py --help`: the jaxrecon-study-leakage command; its flags and docs are in jaxrecon/commands/study_leakage.py."""

from jaxrecon.commands.study_leakage import console

if __name__ == "__main__":
  console()
