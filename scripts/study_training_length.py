"""`python scripts/study_training_length.py --help`: the jaxrecon-study-training-length command; its flags and docs are in jaxrecon/commands/study_training_length.py."""

from jaxrecon.commands.study_training_length import console

if __name__ == "__main__":
  console()
