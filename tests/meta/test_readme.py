"""The README's tour runs as written: every line of its tested block, in an empty folder, exits 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tour() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-test: begin -->\n```bash\n(.*?)```\n<!-- readme-test: end -->", text, re.S)
    assert block, "the README lost its tested block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
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

    text = (ROOT / "README.md").read_text()
    missing = [f.name for f in fields(Settings) if f"| `TAGGER_{f.name.upper()}` |" not in text]
    assert missing == []
