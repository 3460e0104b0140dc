"""`python scripts/study_split.py --help`: the jaxrecon-study-split command; its flags and docs are in jaxrecon/commands/study_split.py."""

from jaxrecon.commands.study_split import console

if __name__ == "__main__":
  console()
