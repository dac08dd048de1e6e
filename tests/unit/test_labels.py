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
        "tags lower-cased: Night -> night (1 rows)",
        "1 image(s) listed on several rows, their tags merged (e.g. a.jpg)",
    ]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"a.jpg,night\n../../etc/passwd,car\n", "labels.csv:2: key has an empty, '.' or '..' segment"),
        (b"a.jpg,night!!\n", "labels.csv:1: tag 'night!!' is not a tag name"),
        (b"a.jpg\n", "labels.csv:1: expected `image_id,tags`, got one field"),
        (b"image_id,tags\n", "has no labelled rows"),
    ],
)
def test_a_bad_label_file_says_where(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        labels.read_labels_csv(_csv(tmp_path, data))


@pytest.mark.parametrize("name", ["Not A Tag!!", "two words", "", "wow!!", "_hidden", "x" * 101])
def test_tag_names_are_single_words(name: str) -> None:
    with pytest.raises(ConfigError):
        labels.normalise_tag(name)


@pytest.mark.parametrize(
    ("name", "stored"),
    [("Night", "night"), ("black-and-white", "black-and-white"), ("Café", "café"), ("rock'n'roll", "rock'n'roll")],
)
def test_tag_names_are_lower_cased(name: str, stored: str) -> None:
    assert labels.normalise_tag(name) == stored
