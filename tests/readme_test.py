"""README's "Audit your own model" example runs as written."""

import io
import os
import re
from contextlib import redirect_stdout

from absl.testing import absltest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


class ReadmeTest(absltest.TestCase):

  def test_audit_example_runs_as_written(self):
    text = open(README).read()
    section = text[text.index("## Audit your own model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with redirect_stdout(out):
      exec(compile(code, "README.md (Audit your own model)", "exec"), {"__name__": "readme"})  # noqa: S102
    lines = out.getvalue().strip().splitlines()
    self.assertLen(lines, 3)
    self.assertIn("of 20 within 0.1 x the data radius", lines[-1])


if __name__ == "__main__":
  absltest.main()
