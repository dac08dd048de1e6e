"""`tagger export --format xmp`: one sidecar per image the active version tagged, merged into what is there.

Images are read in pages by id (keyset: each page one range of the primary key), with that page's
suggestions (by the suggestions' primary key, image first) and decisions, so memory holds one page
whatever the archive's size. After each page the last image id is saved in a small state file under
TAGGER_VAR_DIR; a run that stops (Ctrl-C, a crash) is continued from there by the same command, and a
finished run removes it, so the next run writes every sidecar again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.schema import Image, Label, Storage, Suggestion, Tag
from tagger.errors import NotFoundError, ObjectMissingError
from tagger.storage import Storage as StorageBackend
from tagger.xmp.sidecar import ImageTags, SidecarOptions, UnreadableSidecar, merge, sidecar_key


@dataclass(frozen=True)
class XmpExport:
    """One export's choices, made once by the command: which images, where the sidecars go, how named."""

    storage_url: str  # the images' storage root (canonical)
    target: StorageBackend  # where sidecars are read and written: an output folder, or the storage itself
    naming: str = "photo.jpg.xmp"
    options: SidecarOptions = field(default_factory=SidecarOptions)
    version: str | None = None  # default: the active version
    page: int = 1000


@dataclass
class ExportReport:
    written: int = 0
    merged: int = 0  # of those written, how many merged into a sidecar that was there
    unreadable: list[str] = field(default_factory=list)  # sidecars left as they were, with why (first 20)
    unreadable_count: int = 0
    resumed_after: int | None = None
    model_version: str = ""


def state_path(var_dir: Path, job: XmpExport, version: str) -> Path:
    """The resume state of this export (same storage, target, naming and version): one small JSON file."""
    ident = json.dumps([job.storage_url, job.target.url, job.naming, version, job.options.root])
    return var_dir / "exports" / f"xmp-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"


def export_xmp(
    sessions: sessionmaker[Session],
    job: XmpExport,
    *,
    var_dir: Path,
    restart: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the sidecars of `job`; continue after the last page a stopped run finished unless `restart`."""
    with sessions() as session:
        served = registry.active_or_none(session) if job.version is None else registry.get(session, job.version)
        if served is None:
            raise NotFoundError("no active model version: nothing to export (`tagger models activate VERSION`)")
        if served.pruned_at is not None:
            raise NotFoundError(f"{served.version} was pruned: `tagger models prune` deleted its suggestions")
        storage = session.scalar(select(Storage.id).where(Storage.url == job.storage_url))
        if storage is None:
            raise NotFoundError(f"no image under {job.storage_url} was ever submitted for tagging")
        version_id, version = served.id, served.version
    report = ExportReport(model_version=version)
    state = state_path(var_dir, job, version)
    after = 0
    if state.is_file() and not restart:
        after = int(json.loads(state.read_text())["after_id"])
        report.resumed_after = after
    while True:
        with sessions() as session:
            page = session.execute(
                select(Image.id, Image.key)
                .where(Image.storage_id == storage, Image.model_version_id == version_id, Image.id > after)
                .order_by(Image.id)
                .limit(job.page)
            ).all()
            if not page:
                break
            tags = _page_tags(session, [row.id for row in page], version_id, version)
        for image_id, key in page:
            _write_one(job, key, tags.get(image_id) or ImageTags(version, ()), report)
        after = page[-1].id
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"after_id": after, "model_version": version}))
        if progress:
            progress(len(page))
    state.unlink(missing_ok=True)
    return report


def _page_tags(session: Session, ids: list[int], version_id: int, version: str) -> dict[int, ImageTags]:
    """Each image's suggestions by `version` (best first) and the decisions people made on it."""
    suggested: dict[int, list[tuple[str, float]]] = {}
    rows = session.execute(
        select(Suggestion.image_id, Tag.name, Suggestion.probability)
        .join(Tag, Tag.id == Suggestion.tag_id)
        .where(Suggestion.image_id.in_(ids), Suggestion.model_version_id == version_id)
        .order_by(Suggestion.image_id, Suggestion.probability.desc(), Tag.name)
    )
    for image_id, name, probability in rows:
        suggested.setdefault(image_id, []).append((name, probability))
    accepted: dict[int, list[str]] = {}
    rejected: dict[int, list[str]] = {}
    labels = session.execute(
        select(Label.image_id, Tag.name, Label.positive)
        .join(Tag, Tag.id == Label.tag_id)
        .where(Label.image_id.in_(ids))
    )
    for image_id, name, positive in labels:
        (accepted if positive else rejected).setdefault(image_id, []).append(name)
    return {
        i: ImageTags(version, suggested.get(i, []), accepted.get(i, []), rejected.get(i, []))
        for i in set(suggested) | set(accepted) | set(rejected)
    }


def _write_one(job: XmpExport, key: str, tags: ImageTags, report: ExportReport) -> None:
    """Merge one image's tags into its sidecar; one that cannot be parsed is left alone and counted."""
    name = sidecar_key(key, job.naming)
    try:
        existing: bytes | None = job.target.read(name)
    except ObjectMissingError:
        existing = None
    try:
        body = merge(existing, tags, job.options)
    except UnreadableSidecar as exc:
        report.unreadable_count += 1
        if len(report.unreadable) < 20:
            report.unreadable.append(f"{name}: {exc}")
        return
    job.target.write(name, body)
    report.written += 1
    report.merged += existing is not None
