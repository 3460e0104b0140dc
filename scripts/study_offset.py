"""`python scripts/study_offset.py --help`: the jaxrecon-study-offset command; its flags and docs are in jaxrecon/commands/study_offset.py."""

from jaxrecon.commands.study_offset import console

if __name__ == "__main__":
  console()
