"""XMP sidecars: tagger's keywords merged without touching a person's, and keywords mapped to tags.

Pure code: the XML is built and parsed in this process. tests/integration/test_xmp.py reads what is
written here back with the real ExifTool, and imports keywords from real files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tagger.errors import ConfigError
from tagger.xmp.keywords import Mapper, pair, read_mapping
from tagger.xmp.sidecar import (
    ImageTags,
    Keywords,
    SidecarOptions,
    UnreadableSidecar,
    merge,
    parse,
    read_keywords,
    sidecar_key,
)

# A person's sidecar as digiKam and Lightroom leave one: a rating, a title, their own hierarchy and
# flat keywords (one of them, `night`, is also a tag tagger will suggest), in two rdf:Descriptions.
PERSON = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"
      xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Quai de la Tournelle</rdf:li></rdf:Alt></dc:title>
   <dc:subject><rdf:Bag><rdf:li>Paris</rdf:li><rdf:li>night</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
      xmlns:digiKam="http://www.digikam.org/ns/1.0/">
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Paris</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <digiKam:TagsList><rdf:Seq><rdf:li>Places/Paris</rdf:li></rdf:Seq></digiKam:TagsList>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def _keywords(data: bytes) -> Keywords:
    return read_keywords(parse(data))


def test_a_new_sidecar_holds_the_hierarchy_the_flat_form_and_the_decisions() -> None:
    tags = ImageTags("v7", [("night", 0.93), ("car", 0.61), ("dog", 0.55)], accepted=["night"], rejected=["dog"])
    got = _keywords(merge(None, tags, SidecarOptions(root="machine|tagger")))
    assert got.hierarchical == ["machine|tagger|car", "machine|tagger|night"]  # the rejected dog is not a keyword
    assert got.flat == got.tagger_flat == ["car", "night"]
    assert got.digikam == []  # only where the person's tools keep one
    assert got.tagger_root == "machine|tagger"


def test_a_person_sidecar_keeps_every_field_and_keyword_through_two_writes() -> None:
    first = merge(PERSON, ImageTags("v1", [("night", 0.9), ("car", 0.7)]), SidecarOptions())
    # Then the person files `car` too, beside the `car` tagger added.
    first = first.replace(b"<rdf:li>Paris</rdf:li>", b"<rdf:li>Paris</rdf:li><rdf:li>car</rdf:li>", 1)
    second = merge(first, ImageTags("v2", [("street", 0.8)], rejected=["car"]), SidecarOptions())
    got = _keywords(second)
    # v1's tagger|car, tagger|night and its one flat `car` are gone; the person's `night` (there before
    # tagger suggested it) and `car` stay.
    assert got.hierarchical == ["Places|Paris", "tagger|street"]
    assert got.digikam == ["Places/Paris", "tagger/street"]
    assert sorted(got.flat) == ["Paris", "car", "night", "street"]
    assert got.tagger_flat == ["street"]
    text = second.decode()
    assert 'xmp:Rating="4"' in text and "Quai de la Tournelle" in text and "v1" not in text
    assert text.startswith("<?xpacket begin=") and "<tagger:ModelVersion>v2</tagger:ModelVersion>" in text
    # Writing the same again changes nothing: the merge is a fixed point.
    assert merge(second, ImageTags("v2", [("street", 0.8)], rejected=["car"]), SidecarOptions()) == second


def test_flat_keywords_only_gain_a_hierarchy_with_the_persons_keywords_in_it() -> None:
    """darktable and digiKam read lr:hierarchicalSubject alone once it exists: a person's flat-only keywords
    are copied into it, or adding tagger's hierarchy would hide them."""
    flat_only = PERSON.replace(b"<lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Paris</rdf:li></rdf:Bag>", b"")
    flat_only = flat_only.replace(b"</lr:hierarchicalSubject>", b"").replace(b"<digiKam:TagsList>", b"<!--")
    flat_only = flat_only.replace(b"</digiKam:TagsList>", b"-->")
    got = _keywords(merge(flat_only, ImageTags("v1", [("car", 0.7)]), SidecarOptions(flat=False)))
    assert got.hierarchical == ["Paris", "night", "tagger|car"]
    assert got.flat == ["Paris", "night"]  # --no-flat: nothing added to dc:subject
    assert b"<!--<rdf:Seq>" in merge(flat_only, ImageTags("v1", []), SidecarOptions())  # comments kept


def test_accepted_tags_become_the_persons_keywords_when_asked() -> None:
    options = SidecarOptions(accepted_to_keywords=True)
    once = merge(PERSON, ImageTags("v1", [("car", 0.7)], accepted=["car"]), options)
    again = merge(once, ImageTags("v2", []), SidecarOptions())  # a later export without the decision
    got = _keywords(again)
    assert "car" in got.flat and "car" in got.hierarchical  # the person's now: never removed by tagger
    assert not any(k.startswith("tagger|") for k in got.hierarchical)


@pytest.mark.parametrize("data", [b"not xml at all", b"<a><b/></a>", b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'])
def test_a_sidecar_that_is_not_an_xmp_packet_is_refused_not_overwritten(data: bytes) -> None:
    with pytest.raises(UnreadableSidecar):
        merge(data, ImageTags("v1", [("car", 0.7)]), SidecarOptions())


def test_both_sidecar_names() -> None:
    assert sidecar_key("a/photo.jpg", "photo.jpg.xmp") == "a/photo.jpg.xmp"
    assert sidecar_key("a/photo.v2.jpg", "photo.xmp") == "a/photo.v2.xmp"
    assert sidecar_key("a.b/photo", "photo.xmp") == "a.b/photo.xmp"


def test_images_are_paired_with_their_sidecars_in_listing_order() -> None:
    keys = ["a.jpg", "a.jpg.xmp", "a.png", "a.xmp", "b.tif", "c.xmp", "d.jpg", "notes.txt", "e.jpg"]
    lone: list[str] = []
    assert list(pair(keys, lone=lone.append)) == [
        ("a.jpg", ["a.jpg.xmp", "a.xmp"]),
        ("a.png", ["a.xmp"]),  # photo.xmp belongs to every photo.<ext> beside it
        ("b.tif", []),
        ("d.jpg", []),
        ("e.jpg", []),
    ]
    assert lone == ["c.xmp"]
    # The window: an image released before its sidecar comes leaves the sidecar alone, memory bounded.
    lone.clear()
    assert [k for k, _ in pair(["a.jpg", "b.jpg", "a.jpg.xmp"], window=1, lone=lone.append)] == ["a.jpg", "b.jpg"]
    assert lone == ["a.jpg.xmp"]


def test_keywords_map_to_the_vocabulary_and_tagger_s_own_are_never_labels() -> None:
    mapper = Mapper(frozenset({"night", "dog", "street", "car"}), {"nacht": "night", "places|paris": ""}, "tagger")
    found = Keywords(
        hierarchical=["Animals|Dog", "Places|Paris", "tagger|street", "Places|Street", "tagger|car"],
        flat=["Animals", "Dog", "Nacht", "Holiday 1999", "Paris", "street", "Street", "car"],
        tagger_flat=["street", "car"],
    )
    tags, unknown, ignored = mapper.tags([found])
    # Dog by its last level; Nacht by the mapping; Street (the person's) as a level of Places|Street, whose
    # flat copy is the same keyword; tagger|street, tagger|car and the flat `street` and `car` tagger
    # added are not labels.
    assert tags == {"dog", "night", "street"}
    assert unknown == ["Holiday 1999"]  # Animals and Paris are levels of the image's own hierarchy
    assert ignored == ["Places|Paris"]


def test_a_mapping_file_may_not_add_names(tmp_path: Path) -> None:
    path = tmp_path / "mapping.csv"
    path.write_text("keyword,tag\nNacht,Night\nHund,dog\nSkip me,\n")
    assert read_mapping(path, {"night", "dog"}) == {"nacht": "night", "hund": "dog", "skip me": ""}
    path.write_text("Nacht,night\nEinhorn,unicorn\n")
    with pytest.raises(ConfigError, match=r"mapping.csv:2: 'unicorn' is not in the vocabulary"):
        read_mapping(path, {"night"})
