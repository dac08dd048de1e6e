"""Keywords where archivists work, against the real ExifTool (Debian's libimage-exiftool-perl, installed by the
test set-up when missing) and the real databases: sidecars tagger writes are read back by ExifTool as the
tools read them, a person's sidecar keeps all it held, and keywords in real JPEG, TIFF and PNG files and in
sidecars come back as labels, once, on SQLite and PostgreSQL alike. Functions are called in-process (and
the two commands through `tagger.cli.main`), so no worker and no extra process but ExifTool is started."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select, update

from tagger import labels, registry
from tagger.cli import main
from tagger.db.images import image_ids, storage_id
from tagger.db.schema import Image, Label, Suggestion, Tag
from tagger.model.meta import ArtifactMeta
from tagger.settings import Settings
from tagger.storage import LocalStorage
from tagger.xmp.export import XmpExport, export_xmp, state_path
from tagger.xmp.sidecar import ImageTags, SidecarOptions, merge
from tests.support.debian import debian_binary

TAGS = ["car", "dog", "night", "street"]

# What a person's digiKam and Lightroom left for x/1.jpg, with what an earlier tagger export added
# (tagger|old in both hierarchies, the flat `old` it listed as its own).
PERSON_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"
      xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
      xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:tagger="https://tagger.invalid/ns/xmp/1.0/">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Quai de la Tournelle</rdf:li></rdf:Alt></dc:title>
   <dc:subject><rdf:Bag><rdf:li>Paris</rdf:li><rdf:li>old</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Paris</rdf:li><rdf:li>tagger|old</rdf:li></rdf:Bag>
   </lr:hierarchicalSubject>
   <digiKam:TagsList><rdf:Seq><rdf:li>Places/Paris</rdf:li><rdf:li>tagger/old</rdf:li></rdf:Seq></digiKam:TagsList>
   <tagger:Keywords><rdf:Bag><rdf:li>old</rdf:li></rdf:Bag></tagger:Keywords>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


@pytest.fixture(scope="module")
def exiftool() -> str:
    return debian_binary("exiftool", "libimage-exiftool-perl")


def _exiftool(exiftool: str, *args: str) -> Any:
    done = subprocess.run([exiftool, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout) if done.stdout.startswith("[") else done.stdout


def _vocabulary(sessions: Any) -> int:
    """A registered active version over TAGS (no artifact: nothing here loads a model); its id."""
    with sessions() as session, session.begin():
        meta = ArtifactMeta(version="v1", arch="resnet18", tags=TAGS, input_size=32)
        registry.register(session, meta, uri="file:///models/v1", activate_if_none=False)
        registry.activate(session, "v1")
        return registry.get(session, "v1").id


def _cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    return main(list(argv))


def test_sidecars_are_read_back_by_exiftool_and_keep_a_persons_fields(  # type: ignore[no-untyped-def]
    exiftool: str, settings: Settings, sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _vocabulary(sessions)
    archive = (tmp_path / "stills").as_uri()
    keys = ["x/1.jpg", "x/2.jpg", "3.png", "untagged.jpg"]
    with sessions() as session, session.begin():
        ids = image_ids(session, storage_id(session, archive), keys)
        session.execute(update(Image).where(Image.id.in_([ids[k] for k in keys[:3]])).values(model_version_id=version))
        tag = {name: tag_id for name, tag_id in session.execute(select(Tag.name, Tag.id))}
        rows = [("x/1.jpg", "night", 0.93), ("x/1.jpg", "car", 0.61), ("x/2.jpg", "dog", 0.8), ("3.png", "night", 0.7)]
        session.add_all(
            Suggestion(image_id=ids[k], tag_id=tag[t], model_version_id=version, probability=p) for k, t, p in rows
        )
    labels.decide(sessions, ids["x/1.jpg"], accepted=["night"], rejected=["car"], by="ana")
    out = tmp_path / "sidecars"
    (out / "x").mkdir(parents=True)
    (out / "x" / "1.jpg.xmp").write_text(PERSON_SIDECAR, encoding="utf-8")

    # A run that stops after its first page (of two) is continued by the same command, from that page.
    job = XmpExport(storage_url=archive, target=LocalStorage(out), page=2)

    def stop(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_xmp(sessions, job, var_dir=settings.var_dir, progress=stop)
    last = max(keys[:3], key=ids.__getitem__)  # the one image of the second page
    assert state_path(settings.var_dir, job, "v1").is_file() and not (out / f"{last}.xmp").exists()
    assert _cli(monkeypatch, settings, "export", "--format", "xmp", "-o", str(out), "--storage", archive) == 0
    assert not state_path(settings.var_dir, job, "v1").exists()  # done: the next run writes every sidecar

    read = _exiftool(exiftool, "-j", "-G1", "-struct", "-XMP:all", "-r", "-ext", "xmp", str(out))
    got = {Path(r["SourceFile"]).relative_to(out).as_posix(): r for r in read}
    assert sorted(got) == ["3.png.xmp", "x/1.jpg.xmp", "x/2.jpg.xmp"]  # the untagged still has none
    first = got["x/1.jpg.xmp"]
    # The person's rating, title and keywords as they were; tagger|old and the flat `old` replaced by
    # this version's: night (accepted), not car (rejected).
    assert first["XMP-xmp:Rating"] == 4 and first["XMP-dc:Title"] == "Quai de la Tournelle"
    assert first["XMP-lr:HierarchicalSubject"] == ["Places|Paris", "tagger|night"]
    assert first["XMP-digiKam:TagsList"] == ["Places/Paris", "tagger/night"]
    assert first["XMP-dc:Subject"] == ["Paris", "night"]
    assert (first["XMP-tagger:ModelVersion"], first["XMP-tagger:Accepted"], first["XMP-tagger:Rejected"]) == (
        "v1",
        ["night"],
        ["car"],
    )
    second = got["x/2.jpg.xmp"]
    assert (second["XMP-lr:HierarchicalSubject"], second["XMP-dc:Subject"]) == (["tagger|dog"], ["dog"])
    assert "XMP-digiKam:TagsList" not in second  # none where the person's digiKam kept none


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (16, 16), (200, 40, 40)).save(path)


@pytest.fixture(scope="module")
def archive(exiftool: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stills with keywords as people's tools leave them, made once for both databases; and a mapping file."""
    root = tmp_path_factory.mktemp("xmp") / "archive"
    for name in ("a.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"):
        _jpeg(root / name)
    PILImage.new("RGB", (16, 16)).save(root / "b.png")
    PILImage.new("RGB", (16, 16)).save(root / "c.tif")
    # Embedded, as Lightroom and Photo Mechanic write them: XMP and IPTC in the JPEG, IPTC in the TIFF.
    _exiftool(
        exiftool,
        "-overwrite_original",
        "-XMP-lr:HierarchicalSubject=Places|Street",
        "-XMP-dc:Subject=Nacht",
        "-IPTC:Keywords=Street",
        "-IPTC:Keywords=Car",
        str(root / "a.jpg"),
    )
    _exiftool(exiftool, "-overwrite_original", "-IPTC:Keywords=night", str(root / "c.tif"))
    # Sidecars by both names, written by ExifTool as another tool would; one written by tagger itself.
    _exiftool(exiftool, "-o", str(root / "b.png.xmp"), "-XMP-dc:Subject=dog", "-XMP-dc:Subject=Holiday 1999")
    _exiftool(
        exiftool,
        "-o",
        str(root / "d.xmp"),
        "-XMP-lr:HierarchicalSubject=Animals|Dog",
        "-XMP-dc:Subject=Animals",
        "-XMP-dc:Subject=Dog",
    )
    ours = merge(None, ImageTags("v1", [("night", 0.9)]), SidecarOptions())
    (root / "e.jpg.xmp").write_bytes(ours)
    _exiftool(exiftool, "-overwrite_original", "-XMP-dc:Subject+=Holiday 1999", str(root / "e.jpg.xmp"))
    (root / "f.jpg.xmp").write_text("not XML")
    (root / "lone.xmp").write_bytes(ours)
    (root.parent / "mapping.csv").write_text("keyword,tag\nNacht,night\n")
    return root


def test_keywords_in_files_and_sidecars_become_labels_once(  # type: ignore[no-untyped-def]
    archive: Path,
    settings: Settings,
    sessions,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _vocabulary(sessions)
    root = archive
    with sessions() as session, session.begin():
        a = image_ids(session, storage_id(session, root.as_uri()), ["a.jpg"])["a.jpg"]
    labels.decide(sessions, a, rejected=["car"], by="ana")  # a person's decision, made before the import

    argv = ["labels", "import", "--from-xmp", str(root), "--mapping", str(root.parent / "mapping.csv"), "--json"]
    reports = []
    for _ in range(2):
        assert _cli(monkeypatch, settings, *argv) == 0
        reports.append(json.loads(capsys.readouterr().out))
    first, again = reports
    assert (first["images"], first["labelled"], first["added"]) == (7, 4, 5)
    assert first["unknown"] == {"Holiday 1999": 2}  # on b.png and e.jpg; never added as a tag
    assert (first["lone_sidecars"], sum(first["unreadable"].values())) == (1, 1)
    assert again["added"] == 0  # a re-import adds nothing twice
    with sessions() as session:
        rows = session.execute(
            select(Image.key, Tag.name, Label.positive, Label.source)
            .join(Image, Image.id == Label.image_id)
            .join(Tag, Tag.id == Label.tag_id)
            .order_by(Image.key, Tag.name)
        ).all()
        trained_on = labels.labels_from_db(session)  # what `tagger train --labels db` reads
    assert [tuple(r) for r in rows] == [
        ("a.jpg", "car", False, "rejected"),  # the person's decision stands
        ("a.jpg", "night", True, "xmp-embedded"),
        ("a.jpg", "street", True, "xmp-embedded"),  # IPTC `Street` is the XMP Places|Street's flat copy
        ("b.png", "dog", True, "xmp-sidecar"),
        ("c.tif", "night", True, "xmp-embedded"),
        ("d.jpg", "dog", True, "xmp-sidecar"),  # d.xmp: Lightroom's name; Animals is a level, not unknown
    ]
    assert dict(zip(trained_on.keys, trained_on.tags, strict=True)) == {
        "a.jpg": ["night", "street"],
        "b.png": ["dog"],
        "c.tif": ["night"],
        "d.jpg": ["dog"],
    }


def test_keywords_are_read_from_an_s3_prefix(archive: Path, s3: Any, tmp_path: Path) -> None:
    """From S3, embedded keywords are read through a temporary copy of each batch (SQLite: the database is
    not what this checks)."""
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.storage import S3Storage
    from tagger.xmp.keywords import import_xmp
    from tests.conftest import make_settings

    client = s3.client()
    client.create_bucket(Bucket="xmp-keywords")
    for path in archive.iterdir():
        client.put_object(Bucket="xmp-keywords", Key=f"stills/{path.name}", Body=path.read_bytes())
    engine = make_engine(make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}").database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    _vocabulary(sessions)
    report = import_xmp(sessions, S3Storage("xmp-keywords", "stills"), root="tagger")
    engine.dispose()
    # Without the mapping file Nacht is unknown too; the rest as from the folder.
    assert (report.images, report.labelled, report.added) == (7, 4, 5)  # a.jpg: car and street
    assert report.unknown == {"Holiday 1999": 2, "Nacht": 1}


def test_a_stopped_import_continues_after_its_position_and_starts_over_if_the_archive_changed(
    archive: Path, tmp_path: Path
) -> None:
    """The position is kept after each committed batch; the next run reads only the images after it, and
    ends with the same labels as one run. An archive changed before the position is read again whole."""
    import shutil

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tagger.storage import LocalStorage
    from tagger.xmp.keywords import import_xmp
    from tests.conftest import make_settings

    root = tmp_path / "archive"
    shutil.copytree(archive, root)
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    _vocabulary(sessions)
    var = tmp_path / "var"

    def run(**options: Any) -> Any:
        return import_xmp(sessions, LocalStorage(root), root="tagger", var_dir=var, batch_size=2, **options)

    class Stop(Exception):
        pass

    def stop_after_first_batch(_: int) -> None:
        raise Stop  # as a Ctrl-C would, once the first batch is committed

    with pytest.raises(Stop):
        run(progress=stop_after_first_batch)
    assert [p.name for p in (var / "imports").iterdir()]  # its position is kept
    resumed = run()
    assert (resumed.resumed_after, resumed.images, resumed.restarted) == (2, 7 - 2, None)
    assert not list((var / "imports").iterdir())  # a finished import leaves no position
    with sessions() as session:
        labelled = session.scalar(select(func.count()).select_from(Label))
    assert labelled == 5  # as the whole import adds at once (a.jpg car and street, b, c, d)

    with pytest.raises(Stop):
        run(progress=stop_after_first_batch)
    (root / "0-first.jpg").write_bytes((root / "d.jpg").read_bytes())  # lists before the position
    again = run()
    assert again.restarted and "saved position" in again.restarted and again.resumed_after is None
    assert (again.images, again.added) == (8, 0)  # every image read again; nothing added twice
    engine.dispose()
