"""MkDocs hook: files kept outside docs/ that the manual links to, built into the site under the same link.

The manual links `../BENCHMARKS.md`, which works on a code host and in a checkout. A site has nothing
above its docs, so this hook adds that file to the build under that very source path (published at
`benchmarks/`): the strict build resolves the link and its anchors like any other, and the nav lists
it. A link to any other file outside docs/ stays unresolved and fails the strict build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

OUTSIDE = {"../BENCHMARKS.md": "benchmarks"}  # source path as the pages link it: where the site publishes it


def on_files(files: Files, config: Any) -> Files:
    docs = Path(config["docs_dir"])
    for src_uri, name in OUTSIDE.items():
        source = str((docs / src_uri).resolve())
        # INCLUDED: the default exclusion of hidden files would otherwise take the leading `..` for one.
        page = File.generated(config, src_uri, abs_src_path=source, inclusion=InclusionLevel.INCLUDED)
        page.dest_uri = f"{name}/index.html" if config["use_directory_urls"] else f"{name}.html"
        files.append(page)
    return files
