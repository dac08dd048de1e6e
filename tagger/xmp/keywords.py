"""`tagger labels import --from-xmp`: the keywords people already gave their stills, as training labels.

A storage is listed once, streaming. Each image is paired with its sidecars (`photo.jpg.xmp` and
`photo.xmp`; a listing is in name order, so an image comes a few names before its sidecars, and a
window of the last WINDOW images is all that is held). Keywords come from the sidecars (parsed by
tagger.xmp.sidecar) and from XMP and IPTC embedded in JPEG, TIFF and PNG files (read by ExifTool).

Mapping, per image: a hierarchical keyword (`Places|Night`, or digiKam's `Places/Night`) is looked up
whole in the mapping file, then by its last level; a flat one (dc:subject, IPTC Keywords) as it is; what
the mapping does not name is a tag when its name (NFKC, lower case) is in the vocabulary. A flat keyword
that is a level of one of the image's own hierarchical keywords is the same keyword as tools write it
twice (Lightroom's convention), not another. Keywords under tagger's own root and the flat keywords
tagger added are its suggestions, never labels. Anything else is unknown: counted, never added.

Labels are inserted with ON CONFLICT DO NOTHING: a re-import adds nothing twice and never overrules a
decision made on the review pages. Each batch commits on its own, so a stopped import keeps what it did
and is simply run again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.images import image_ids, storage_id
from tagger.db.schema import Label, Tag, utcnow
from tagger.db.upsert import insert_ignore
from tagger.errors import ConfigError, PermanentError, StorageError
from tagger.labels import normalise_tag
from tagger.storage import LocalStorage, Storage, is_image_key
from tagger.xmp.exiftool import EMBEDDED_SUFFIXES, ExifTool
from tagger.xmp.sidecar import Keywords, UnreadableSidecar, parse, read_keywords

WINDOW = 1000  # images held while their sidecars may still come in the listing
BATCH = 200  # images per ExifTool call and per transaction
SOURCE_SIDECAR = "xmp-sidecar"
SOURCE_EMBEDDED = "xmp-embedded"  # XMP or IPTC inside the image file


@dataclass
class ImportReport:
    images: int = 0  # images listed
    labelled: int = 0  # images with at least one keyword that mapped to a tag
    added: int = 0  # labels inserted now (a re-import: 0)
    unknown: Counter[str] = field(default_factory=Counter)  # keyword -> images it was on
    ignored: Counter[str] = field(default_factory=Counter)  # keywords the mapping file maps to nothing
    lone_sidecars: int = 0  # sidecars with no image beside them
    unreadable: Counter[str] = field(default_factory=Counter)  # why -> how many sidecars
    resumed_after: int | None = None  # images a stopped import had finished, not read again
    restarted: str | None = None  # why a saved position was not used (the listing changed since)


def read_mapping(path: Path, vocabulary: Iterable[str]) -> dict[str, str]:
    """`keyword,tag` rows (a header is optional; an empty tag ignores the keyword on purpose) as a map from
    the keyword (NFKC, case-folded) to the tag. Raises ConfigError naming rows whose tag is not a tag of
    the vocabulary: a mapping must not add names."""
    if not path.is_file():
        raise ConfigError(f"mapping file not found: {path}")
    known = set(vocabulary)
    mapping: dict[str, str] = {}
    wrong: list[str] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or (lineno == 1 and [c.lower() for c in cells[:2]] == ["keyword", "tag"]):
                continue
            if len(cells) < 2:
                wrong.append(f"{path}:{lineno}: expected `keyword,tag`, got {cells[0]!r}")
                continue
            try:
                tag = normalise_tag(cells[1]) if cells[1] else ""
            except ConfigError as exc:
                wrong.append(f"{path}:{lineno}: {exc}")
                continue
            if tag and tag not in known:
                wrong.append(f"{path}:{lineno}: {tag!r} is not in the vocabulary")
                continue
            mapping[_fold(cells[0])] = tag
    if wrong:
        raise ConfigError("the mapping file has rows that cannot be used:\n  " + "\n  ".join(wrong[:20]))
    return mapping


def _fold(keyword: str) -> str:
    return unicodedata.normalize("NFKC", keyword).strip().casefold()


@dataclass(frozen=True)
class Mapper:
    """Keywords to tags of the vocabulary: see the module's docstring for the rules."""

    vocabulary: frozenset[str]
    mapping: dict[str, str]
    root: str

    def tags(self, found: Iterable[Keywords]) -> tuple[set[str], list[str], list[str]]:
        """(tags, unknown keywords, ignored keywords) of one image from all that carries its keywords."""
        paths: list[str] = []
        flat: list[str] = []
        for kw in found:
            roots = {self.root} | ({kw.tagger_root} if kw.tagger_root else set())
            for path in kw.hierarchical + [p.replace("/", "|") for p in kw.digikam]:
                if not any(path == r or path.startswith(r + "|") for r in roots):
                    paths.append(path)
            theirs = list(kw.tagger_flat)
            for word in kw.flat:
                if word in theirs:
                    theirs.remove(word)
                else:
                    flat.append(word)
        levels = {_fold(level) for path in paths for level in path.split("|")}
        tags: set[str] = set()
        unknown: list[str] = []
        ignored: list[str] = []
        for keyword, candidates in [(p, [p, p.rsplit("|", 1)[-1]]) for p in dict.fromkeys(paths)] + [
            (w, [w]) for w in dict.fromkeys(flat) if _fold(w) not in levels
        ]:
            tag = self._tag(candidates)
            if tag is None:
                unknown.append(keyword)
            elif tag == "":
                ignored.append(keyword)
            else:
                tags.add(tag)
        return tags, sorted(set(unknown)), sorted(set(ignored))

    def _tag(self, candidates: list[str]) -> str | None:
        """The tag the first candidate names ('' when the mapping ignores it); None when none does."""
        for candidate in candidates:
            if _fold(candidate) in self.mapping:
                return self.mapping[_fold(candidate)]
        try:
            name = normalise_tag(candidates[-1])
        except ConfigError:
            return None
        return name if name in self.vocabulary else None


def pair(keys: Iterable[str], *, window: int = WINDOW, lone: Callable[[str], None]) -> Iterator[tuple[str, list[str]]]:
    """(image key, its sidecar keys) for each image of a listing, in listing order, holding at most `window`
    images; `lone` is called with each sidecar no image within the window claims."""
    held: OrderedDict[str, list[str]] = OrderedDict()  # image key -> sidecars found so far
    by_base: dict[str, list[str]] = {}  # `dir/photo` -> held images `dir/photo.<ext>`
    for key in keys:
        if key.lower().endswith(".xmp"):
            stem = key[:-4]
            owners = [stem] if stem in held else list(by_base.get(stem, ()))
            for owner in owners:
                held[owner].append(key)
            if not owners:
                lone(key)
        elif is_image_key(key):
            held[key] = []
            by_base.setdefault(_base(key), []).append(key)
            if len(held) > window:
                yield _release(held, by_base)
    while held:
        yield _release(held, by_base)


def _base(key: str) -> str:
    return key[: key.rfind(".")]


def _release(held: OrderedDict[str, list[str]], by_base: dict[str, list[str]]) -> tuple[str, list[str]]:
    key, sidecars = held.popitem(last=False)
    base = _base(key)
    by_base[base].remove(key)
    if not by_base[base]:
        del by_base[base]
    return key, sidecars


def import_state_path(var_dir: Path, storage_url: str, root: str, embedded: bool, mapping_file: Path | None) -> Path:
    """Where an import of this storage (with this root, mapping and embedded choice) keeps its position."""
    mapping = hashlib.sha256(mapping_file.read_bytes()).hexdigest() if mapping_file and mapping_file.is_file() else ""
    ident = json.dumps([storage_url, root, embedded, mapping])
    return var_dir / "imports" / f"xmp-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"


def import_xmp(
    sessions: sessionmaker[Session],
    storage: Storage,
    *,
    root: str,
    mapping_file: Path | None = None,
    embedded: bool = True,
    exiftool: str | None = None,
    progress: Callable[[int], None] | None = None,
    var_dir: Path | None = None,
    restart: bool = False,
    batch_size: int = 0,
) -> ImportReport:
    """Record the keywords of every image under `storage` that map to the vocabulary as labels.

    With `var_dir`, the position after each committed batch is kept there (images done, and the last one's
    key), and a stopped import continues after it unless `restart`: the listing is walked again (the same
    order: sorted, as storages list), but the images it had finished are not read again. If the image at
    that position is another one (the archive changed), it starts over; nothing is added twice either way.
    """
    with sessions() as session:
        vocabulary: dict[str, int] = {name: tag_id for name, tag_id in session.execute(select(Tag.name, Tag.id))}
    if not vocabulary:
        raise ConfigError(
            "the vocabulary is empty: register a model (`tagger train`) or import a labels CSV first; "
            "keywords are mapped to tags that exist, never added as new ones"
        )
    mapper = Mapper(
        frozenset(vocabulary), read_mapping(mapping_file, vocabulary) if mapping_file else {}, root.strip("|")
    )
    report = ImportReport()
    storage.check()

    def lone(_: str) -> None:
        report.lone_sidecars += 1

    state = import_state_path(var_dir, storage.url, root, embedded, mapping_file) if var_dir else None
    skip, expected = 0, ""
    if state is not None and state.is_file() and not restart:
        saved = json.loads(state.read_text())
        skip, expected = int(saved["done"]), str(saved["last_key"])
    size = batch_size or BATCH
    done = 0

    def commit(batch: list[tuple[str, list[str]]]) -> None:
        nonlocal done
        _import_batch(sessions, storage, batch, mapper, reader, vocabulary, report)
        done += len(batch)
        if state is not None:
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"done": done, "last_key": batch[-1][0]}))
        if progress:
            progress(len(batch))

    changed = ""  # why the saved position does not hold (the archive changed since)
    pairs = pair((e.key for e in storage.list_entries()), lone=lone)
    with ExifTool(exiftool) if embedded else _NoExifTool() as reader:
        batch: list[tuple[str, list[str]]] = []
        passed = 0  # images passed over while resuming, counted, never held
        for item in pairs:
            if passed < skip:
                passed += 1
                if passed == skip:  # at the saved position: the same image, or the archive changed
                    if item[0] != expected:
                        changed = f"the image at the saved position is {item[0]!r}, not {expected!r}"
                        break
                    done = report.resumed_after = skip
                continue
            batch.append(item)
            if len(batch) >= size:
                commit(batch)
                batch = []
        else:
            if passed < skip:
                changed = f"the listing ends before the saved position ({skip} images)"
            elif batch:
                commit(batch)
    if changed:  # start over: reading an image again adds nothing twice
        fresh = import_xmp(
            sessions,
            storage,
            root=root,
            mapping_file=mapping_file,
            embedded=embedded,
            exiftool=exiftool,
            progress=progress,
            var_dir=var_dir,
            restart=True,
            batch_size=batch_size,
        )
        fresh.restarted = changed
        return fresh
    if state is not None:
        state.unlink(missing_ok=True)
    return report


class _NoExifTool:
    """--no-embedded: sidecars only, and no ExifTool needed."""

    def __enter__(self) -> _NoExifTool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def keywords(self, paths: list[Path]) -> dict[Path, Keywords]:
        return {}


def _import_batch(
    sessions: sessionmaker[Session],
    storage: Storage,
    batch: list[tuple[str, list[str]]],
    mapper: Mapper,
    reader: ExifTool | _NoExifTool,
    vocabulary: dict[str, int],
    report: ImportReport,
) -> None:
    report.images += len(batch)
    embedded = _embedded(storage, [key for key, _ in batch], reader)
    found: dict[str, dict[str, str]] = {}  # image key -> tag -> source
    for key, sidecars in batch:
        sources: list[tuple[str, Keywords]] = []
        for name in sidecars:
            try:
                sources.append((SOURCE_SIDECAR, read_keywords(parse(storage.read(name)))))
            except (UnreadableSidecar, PermanentError) as exc:
                report.unreadable[str(exc).split(":")[0]] += 1
        if key in embedded:
            sources.append((SOURCE_EMBEDDED, embedded[key]))
        mapped, unknown, ignored = mapper.tags([kw for _, kw in sources])
        report.unknown.update(unknown)
        report.ignored.update(ignored)
        # Each tag's source: the first that maps to it alone (a sidecar before the file itself).
        tags: dict[str, str] = {}
        for source, keywords in sources:
            for tag in mapper.tags([keywords])[0] & mapped:
                tags.setdefault(tag, source)
        tags.update({tag: SOURCE_SIDECAR for tag in mapped - set(tags)})
        if tags:
            found[key] = tags
    if not found:
        return
    report.labelled += len(found)
    now = utcnow()
    with sessions() as session, session.begin():
        ids = image_ids(session, storage_id(session, storage.url), list(found))
        rows = [
            {
                "image_id": ids[key],
                "tag_id": vocabulary[tag],
                "positive": True,
                "source": source,
                "decided_by": None,
                "created_at": now,
            }
            for key, tags in found.items()
            for tag, source in sorted(tags.items())
        ]
        # DO NOTHING: a label already there (imported before, or a decision made since) stands.
        stmt = insert_ignore(session, Label, rows, ["image_id", "tag_id"]).returning(Label.image_id)
        report.added += len(session.execute(stmt).all())


def _embedded(storage: Storage, keys: list[str], reader: ExifTool | _NoExifTool) -> dict[str, Keywords]:
    """The embedded keywords of the batch's JPEG, TIFF and PNG files: read in place from a folder, through
    a temporary copy from S3 (ExifTool reads only the first part of a JPEG's bytes; S3 sends them all)."""
    wanted = [k for k in keys if k[k.rfind(".") :].lower() in EMBEDDED_SUFFIXES]
    if not wanted or isinstance(reader, _NoExifTool):
        return {}
    if isinstance(storage, LocalStorage):
        paths = {storage.root / k: k for k in wanted}
        return {paths[p]: kw for p, kw in reader.keywords(list(paths)).items() if p in paths}
    with tempfile.TemporaryDirectory(prefix="tagger-xmp-") as tmp:
        paths = {}
        for n, key in enumerate(wanted):
            path = Path(tmp) / f"{n}{key[key.rfind('.') :]}"
            try:
                path.write_bytes(storage.read(key))
            except (PermanentError, StorageError):
                continue  # gone or unreadable since the listing: its keywords cannot be read
            paths[path] = key
        return {paths[p]: kw for p, kw in reader.keywords(list(paths)).items() if p in paths}
