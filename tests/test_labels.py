"""Label files as people save them, and the decisions people make, read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tagger import labels
from tagger.db.schema import Label, Tag
from tagger.errors import ConfigError


def _csv(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data",
    [
        # Excel: a byte-order mark, Windows line ends, quoted fields, and a header
        b'\xef\xbb\xbf"image_id","tags"\r\n"a.jpg","night car"\r\n"b.jpg","car"\r\n',
        # the Planet Kaggle layout
        b"image_name,tags\na.jpg,night car\nb.jpg,car\n",
        # no header, tags separated by commas inside a quoted field, mixed case
        b'a.jpg,"Night,car"\nb.jpg,CAR\n',
        # one image on two rows, and a blank line
        b"image,labels\na.jpg,night\n\nb.jpg,car\na.jpg,car\n",
        # more than two columns: the extra ones are tags too
        b"a.jpg,night,car\nb.jpg,car\n",
    ],
)
def test_label_files_as_people_save_them_read_the_same(tmp_path: Path, data: bytes) -> None:
    read = labels.read_labels_csv(_csv(tmp_path, data))
    assert dict(zip(read.keys, read.tags, strict=True)) == {"a.jpg": ["car", "night"], "b.jpg": ["car"]}


def test_what_was_normalised_is_said(tmp_path: Path) -> None:
    read = labels.read_labels_csv(_csv(tmp_path, b"image_id,tags\na.jpg,Night\na.jpg,car\nb.jpg,night\n"))
    assert read.notes == [
        "the first row is a header",
        "tags normalised (NFKC, lower case): Night -> night (1 rows)",
        "1 image(s) listed on several rows, their tags merged (e.g. a.jpg)",
    ]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"../../etc/passwd,car\n", "labels.csv:1: key has an empty, '.' or '..' segment"),
        (b"a.jpg,night!!\n", "labels.csv:1: tag 'night!!' is not a tag name"),
        (b"a.jpg\n", "labels.csv:1: expected `image_id,tags`, got one field"),
        (b"image_id,tags\n", "has no labelled rows"),
    ],
)
def test_a_bad_label_file_says_where(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        labels.read_labels_csv(_csv(tmp_path, data))


def test_bad_lines_are_refused_alone_and_the_good_ones_read(tmp_path: Path) -> None:
    data = "image_id,tags\na.jpg,night\n../../etc/passwd,car\nb.jpg,wow!!\nc.jpg\nd.jpg,Cafe\u0301 car\n"
    read = labels.read_labels_csv(_csv(tmp_path, data.encode()))
    assert dict(zip(read.keys, read.tags, strict=True)) == {"a.jpg": ["night"], "d.jpg": ["café", "car"]}
    where = tmp_path / "labels.csv"
    assert read.refused == [
        f"{where}:3: key has an empty, '.' or '..' segment: ../../etc/passwd",
        f"{where}:4: tag 'wow!!' is not a tag name: letters, digits and . & ' + : / - _ only, starting with a "
        "letter or digit, at most 100 characters",
        f"{where}:5: expected `image_id,tags`, got one field: 'c.jpg'",
    ]
    assert read.notes[-1].startswith("3 line(s) refused and not read, the others were: ")


@pytest.mark.parametrize("name", ["Not A Tag!!", "two words", "", "wow!!", "_hidden", "x" * 101])
def test_tag_names_are_single_words(name: str) -> None:
    with pytest.raises(ConfigError):
        labels.normalise_tag(name)


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("Night", "night"),
        ("black-and-white", "black-and-white"),
        ("Café", "café"),
        ("rock'n'roll", "rock'n'roll"),
        ("Cafe\u0301", "café"),  # decomposed (NFD): one tag with the composed spelling
        ("CAFE\u0301", "café"),
        ("\uff4e\uff49\uff47\uff48\uff54", "night"),  # full-width letters, as an IME types them
        ("\ufb01lm-noir", "film-noir"),  # the fi ligature
    ],
)
def test_tag_names_are_lower_cased(name: str, stored: str) -> None:
    assert labels.normalise_tag(name) == stored


def test_an_import_with_an_image_on_two_rows_and_decisions_later(settings, sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL, one image on two rows once broke the import (CardinalityViolation); now they merge."""
    path = _csv(tmp_path, b"image_id,tags\nplain.jpg,night\nplain.jpg,car\nother.jpg,Car\n")
    data, written = labels.import_csv(sessions, path, storage_url=tmp_path.as_uri())
    assert (len(data.keys), written) == (2, 3)
    again, _ = labels.import_csv(sessions, path, storage_url=tmp_path.as_uri())  # idempotent
    with sessions() as session:
        rows = session.execute(select(Tag.name, Label.positive).join(Label, Label.tag_id == Tag.id)).all()
        image_id = session.scalar(select(Label.image_id).join(Tag, Tag.id == Label.tag_id).where(Tag.name == "night"))
    assert sorted(rows) == [("car", True), ("car", True), ("night", True)]
    # A person rejects "night" for that image: the decision replaces the label, a negative now.
    labels.decide(sessions, image_id, rejected=["night"], by="ana")
    read = labels.labels_from_db(session := sessions())
    session.close()
    by_key = dict(zip(read.keys, read.tags, strict=True))
    assert by_key == {"other.jpg": ["car"], "plain.jpg": ["car"]}
    images, per_tag = labels.stats(sessions)
    assert (images, per_tag) == (2, [("car", 2, 0), ("night", 0, 1)])
