"""CI runs exactly README's test command: one line, the same in both places."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Set up and run the tests", 1)[1]
    command = re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()
    assert "\n" not in command and command.endswith("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"{command} || status=$?" in ci
