"""`python scripts/study_sphere.py --help`: the jaxrecon-study-sphere command; its flags and docs are in jaxrecon/commands/study_sphere.py."""

from jaxrecon.commands.study_sphere import console

if __name__ == "__main__":
  console()
