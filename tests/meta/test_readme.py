"""The manual's tour runs as written: every line of its tested block (docs/tour.md), in an empty folder, exits 0.

Also: every setting is in the configuration table (docs/operate.md), and the README stays a front door."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOUR = ROOT / "docs" / "tour.md"  # holds the tested block
CONFIGURATION = ROOT / "docs" / "operate.md"  # holds the settings table
README_MAX_LINES = 150  # a front door: pitch, `make demo`, `make test`, a taste, where next


def _tour() -> list[str]:
    text = TOUR.read_text()
    block = re.search(r"<!-- tour-test: begin -->\n```bash\n(.*?)```\n<!-- tour-test: end -->", text, re.S)
    assert block, f"{TOUR.relative_to(ROOT)} lost its tested block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGGER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    outputs = []
    for line in _tour():
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"`{line}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    assert "done" in outputs[2] and (tmp_path / "tags.csv").read_text().startswith("storage,key,tag")


def test_every_setting_is_in_the_configuration_table() -> None:
    from dataclasses import fields

    from tagger.settings import Settings

    text = CONFIGURATION.read_text()
    missing = [f.name for f in fields(Settings) if f"| `TAGGER_{f.name.upper()}` |" not in text]
    assert missing == []


def test_the_readme_is_a_front_door() -> None:
    """At most README_MAX_LINES lines, with the two first commands as commands; the manual is in docs/."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "move the new section to its page in docs/"
    assert "make demo" in text and "make test" in text
    # The README is outside the site that `make lint` builds strictly, so its own links are checked here.
    targets = re.findall(r"\]\(([^):#]+)(?:#[^)]*)?\)", text)
    assert targets and [t for t in targets if not (ROOT / t).exists()] == []
