"""Keywords embedded in image files (XMP and IPTC in JPEG, TIFF and PNG), read by ExifTool.

ExifTool (Debian's `libimage-exiftool-perl`) reads every way a file can carry keywords, IPTC's legacy
character sets included; PyExifTool keeps one ExifTool process open (`-stay_open`) and hands it a batch
of paths at a time, so Perl starts once per import, not once per file (docs/design.md has the measurement).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tagger.errors import ConfigError
from tagger.xmp.sidecar import Keywords

# Files that can carry XMP or IPTC keywords among the suffixes tagger tags (GIF, BMP and WebP are not read).
EMBEDDED_SUFFIXES = frozenset({".jpg", ".jpeg", ".tif", ".tiff", ".png"})
_TAGS = [
    "XMP-lr:HierarchicalSubject",
    "XMP-digiKam:TagsList",
    "XMP-dc:Subject",
    "IPTC:Keywords",
    "XMP-tagger:Keywords",
    "XMP-tagger:Root",
]
INSTALL = "install ExifTool: `sudo apt-get install libimage-exiftool-perl` (Debian, Ubuntu) or see exiftool.org"


class ExifTool:
    """One ExifTool process for the life of the `with` block."""

    def __init__(self, executable: str | None = None) -> None:
        import exiftool

        kwargs: dict[str, Any] = {"common_args": ["-G1", "-n"], "check_execute": False}
        if executable:
            kwargs["executable"] = executable
        self._helper = exiftool.ExifToolHelper(**kwargs)

    def __enter__(self) -> ExifTool:
        try:
            self._helper.run()
        except FileNotFoundError:
            raise ConfigError(f"no `exiftool` to read keywords embedded in images; {INSTALL}") from None
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._helper.terminate()

    def keywords(self, paths: Sequence[Path]) -> dict[Path, Keywords]:
        """The keywords each readable file carries (a file ExifTool cannot read is absent, or has none)."""
        if not paths:
            return {}
        found: dict[Path, Keywords] = {}
        for row in self._helper.get_tags([str(p) for p in paths], tags=_TAGS, params=["-fast"]):
            roots = _list(row.get("XMP-tagger:Root"))
            found[Path(row["SourceFile"])] = Keywords(
                hierarchical=_list(row.get("XMP-lr:HierarchicalSubject")),
                digikam=_list(row.get("XMP-digiKam:TagsList")),
                flat=_list(row.get("XMP-dc:Subject")) + _list(row.get("IPTC:Keywords")),
                tagger_flat=_list(row.get("XMP-tagger:Keywords")),
                tagger_root=roots[0] if roots else None,
            )
        return found


def _list(value: object) -> list[str]:
    """ExifTool's JSON gives one value alone and several as a list; a keyword such as 1999 as a number."""
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if str(v).strip()]
