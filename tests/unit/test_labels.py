"""Label files as people save them read the same; tag names are single lower-case words."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagger import labels
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
