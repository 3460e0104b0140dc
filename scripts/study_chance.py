"""`python scripts/study_chance.py --help`: the jaxrecon-study-chance command; its flags and docs are in jaxrecon/commands/study_chance.py."""

from jaxrecon.commands.study_chance import console

if __name__ == "__main__":
  console()
