"""XMP sidecars: tagger's keywords merged into a packet a person's tools also write, and read back.

Tagger owns a namespace and nothing else. In the packet that is: every property in tagger's own XMP
namespace (`tagger:`), the `ROOT|...` entries of `lr:hierarchicalSubject` (and `ROOT/...` of
`digiKam:TagsList`, only where that list already exists), and the flat keywords of `dc:subject` that
tagger itself added (listed in `tagger:Keywords`; a keyword the person already had is never listed, so
never removed). A rewrite removes exactly that and writes it anew; every other element, attribute,
namespace and keyword of the packet is kept as it was. A packet that cannot be parsed is never
overwritten (`UnreadableSidecar`).

XML is parsed with lxml with entities and network access off (a sidecar is data from outside).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from lxml import etree

from tagger.errors import PermanentError

NS_X = "adobe:ns:meta/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_LR = "http://ns.adobe.com/lightroom/1.0/"
NS_DIGIKAM = "http://www.digikam.org/ns/1.0/"
# tagger's own namespace: `.invalid` is reserved (RFC 2606), so the URI can never name someone else's.
NS_TAGGER = "https://tagger.invalid/ns/xmp/1.0/"

_NSMAP = {"x": NS_X, "rdf": NS_RDF, "dc": NS_DC, "lr": NS_LR, "tagger": NS_TAGGER}
_NEW_PACKET = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="tagger">\n'
    b' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    b" </rdf:RDF>\n"
    b"</x:xmpmeta>\n"
    b'<?xpacket end="w"?>'
)


class UnreadableSidecar(PermanentError):
    """An existing sidecar that is not an XMP packet tagger can parse: it is left as it is."""


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


@dataclass(frozen=True)
class ImageTags:
    """What tagger writes for one image: the version's suggestions (tag, probability; above their
    thresholds, as stored) and the decisions people made on the review pages."""

    model_version: str
    suggested: Sequence[tuple[str, float]]
    accepted: Sequence[str] = ()
    rejected: Sequence[str] = ()

    def keywords(self) -> list[str]:
        """The tags written as keywords: suggested or accepted, never rejected, in name order."""
        rejected = set(self.rejected)
        return sorted(({t for t, _ in self.suggested} | set(self.accepted)) - rejected)


@dataclass(frozen=True)
class SidecarOptions:
    """How keywords are laid out: the hierarchy's root, whether the flat form goes to `dc:subject`, and
    whether accepted tags also become the person's own keywords."""

    root: str = "tagger"
    flat: bool = True
    accepted_to_keywords: bool = False


@dataclass
class Keywords:
    """The keywords a packet holds, as the tools read them, with tagger's own told apart."""

    hierarchical: list[str] = field(default_factory=list)  # lr:hierarchicalSubject, `|`-separated
    digikam: list[str] = field(default_factory=list)  # digiKam:TagsList, `/`-separated
    flat: list[str] = field(default_factory=list)  # dc:subject
    tagger_flat: list[str] = field(default_factory=list)  # tagger:Keywords: the dc:subject entries tagger added
    tagger_root: str | None = None  # tagger:Root: the root tagger last wrote under


def parse(data: bytes) -> etree._ElementTree:
    """Parse a packet (with or without `x:xmpmeta`, xpacket wrapper and all). Raises UnreadableSidecar."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise UnreadableSidecar(f"not XML: {exc}") from None
    if _rdf(root) is None:
        raise UnreadableSidecar("no rdf:RDF element: not an XMP packet")
    return root.getroottree()


def _rdf(root: etree._Element) -> etree._Element | None:
    if root.tag == _q(NS_RDF, "RDF"):
        return root
    return root.find(f".//{_q(NS_RDF, 'RDF')}")


def _descriptions(tree: etree._ElementTree) -> list[etree._Element]:
    rdf = _rdf(tree.getroot())
    assert rdf is not None  # parse() checked
    return rdf.findall(_q(NS_RDF, "Description"))


def _items(prop: etree._Element) -> list[etree._Element]:
    """The rdf:li of a property's Bag, Seq or Alt."""
    return [li for container in prop for li in container if li.tag == _q(NS_RDF, "li")]


def _values(tree: etree._ElementTree, ns: str, name: str) -> list[str]:
    values: list[str] = []
    for desc in _descriptions(tree):
        attr = desc.get(_q(ns, name))
        if attr is not None:
            values.append(attr)
        for prop in desc.findall(_q(ns, name)):
            items = _items(prop)
            values += [li.text or "" for li in items] if items else [prop.text or ""]
    return [v.strip() for v in values if v and v.strip()]


def read_keywords(tree: etree._ElementTree) -> Keywords:
    """The keywords of a parsed packet, as lr, digiKam and dc hold them, and tagger's own bookkeeping."""
    roots = _values(tree, NS_TAGGER, "Root")
    return Keywords(
        hierarchical=_values(tree, NS_LR, "hierarchicalSubject"),
        digikam=_values(tree, NS_DIGIKAM, "TagsList"),
        flat=_values(tree, NS_DC, "subject"),
        tagger_flat=_values(tree, NS_TAGGER, "Keywords"),
        tagger_root=roots[0] if roots else None,
    )


def merge(existing: bytes | None, tags: ImageTags, options: SidecarOptions) -> bytes:
    """The sidecar with tagger's namespace (see the module's docstring) replaced by `tags`, everything else
    of `existing` kept. Raises UnreadableSidecar when `existing` cannot be parsed."""
    tree = parse(existing if existing else _NEW_PACKET)
    old = read_keywords(tree)
    roots = {options.root} | ({old.tagger_root} if old.tagger_root else set())
    _remove_tagger(tree, roots, old.tagger_flat)
    keywords = tags.keywords()
    paths = [f"{options.root}|{t}" for t in keywords]
    ours = _our_description(tree)
    person = read_keywords(tree)  # what is left: the person's own

    hierarchical = _property(tree, NS_LR, "hierarchicalSubject")
    if hierarchical is None and paths:
        hierarchical = _new_property(ours, NS_LR, "hierarchicalSubject", "Bag")
        # A packet with flat keywords only is read from dc:subject by darktable and digiKam; once an
        # lr:hierarchicalSubject exists they read that alone, so the person's flat keywords go there too,
        # top level, as Lightroom itself files a flat keyword.
        _append(hierarchical, person.flat)
    if hierarchical is not None:
        _append(hierarchical, paths)
    digikam = _property(tree, NS_DIGIKAM, "TagsList")
    if digikam is not None:  # only where it exists: digiKam reads it alone, before lr:hierarchicalSubject
        _append(digikam, [p.replace("|", "/") for p in paths])

    if options.accepted_to_keywords and tags.accepted:
        _give_to_person(tree, ours, tags, person)
        person = read_keywords(tree)
    added_flat: list[str] = []
    if options.flat and keywords:
        have = {k.casefold() for k in person.flat}
        added_flat = [t for t in keywords if t.casefold() not in have]
        _append(_property_or_new(tree, ours, NS_DC, "subject"), added_flat)

    _set_simple(ours, "Root", options.root)
    _set_simple(ours, "ModelVersion", tags.model_version)
    _set_bag(ours, "Suggestions", [f"{t}={p:.4f}" for t, p in tags.suggested])
    _set_bag(ours, "Accepted", sorted(tags.accepted))
    _set_bag(ours, "Rejected", sorted(tags.rejected))
    _set_bag(ours, "Keywords", added_flat)
    etree.cleanup_namespaces(tree.getroot())
    body: bytes = etree.tostring(tree, encoding="utf-8")
    return body if body.endswith(b"\n") else body + b"\n"


def _give_to_person(tree: etree._ElementTree, ours: etree._Element, tags: ImageTags, person: Keywords) -> None:
    """Accepted tags as the person's own keywords (top level, flat): tagger never removes them again."""
    have_flat = {k.casefold() for k in person.flat}
    have_paths = {k.casefold() for k in person.hierarchical}
    subject = _property_or_new(tree, ours, NS_DC, "subject")
    _append(subject, [t for t in sorted(tags.accepted) if t.casefold() not in have_flat])
    hierarchical = _property(tree, NS_LR, "hierarchicalSubject")
    if hierarchical is not None:
        _append(hierarchical, [t for t in sorted(tags.accepted) if t.casefold() not in have_paths])


def _remove_tagger(tree: etree._ElementTree, roots: set[str], tagger_flat: list[str]) -> None:
    """Take out what tagger wrote before: its namespace, its hierarchy's entries, its flat keywords."""
    owned_flat = list(tagger_flat)
    slashed = {r.replace("|", "/") for r in roots}
    for desc in _descriptions(tree):
        for name in [a for a in desc.attrib if a.startswith(f"{{{NS_TAGGER}}}")]:
            del desc.attrib[name]
        for prop in list(desc):
            if isinstance(prop.tag, str) and prop.tag.startswith(f"{{{NS_TAGGER}}}"):
                desc.remove(prop)
            elif prop.tag == _q(NS_LR, "hierarchicalSubject"):
                _drop(prop, lambda v: any(v == r or v.startswith(r + "|") for r in roots))
            elif prop.tag == _q(NS_DIGIKAM, "TagsList"):
                _drop(prop, lambda v: any(v == r or v.startswith(r + "/") for r in slashed))
            elif prop.tag == _q(NS_DC, "subject"):

                def owned(value: str) -> bool:
                    if value in owned_flat:
                        owned_flat.remove(value)  # once each: a person's same keyword added later stays
                        return True
                    return False

                _drop(prop, owned)
        if len(desc) == 0 and set(desc.attrib) <= {_q(NS_RDF, "about")}:
            parent = desc.getparent()
            if parent is not None:
                parent.remove(desc)


def _drop(prop: etree._Element, ours: Callable[[str], bool]) -> None:
    """Remove the items `ours(text)` claims; the property itself when that leaves it empty."""
    items = _items(prop)
    removed = [li for li in items if ours((li.text or "").strip())]
    for li in removed:
        parent = li.getparent()
        if parent is not None:
            parent.remove(li)
    if removed and len(removed) == len(items):
        parent = prop.getparent()
        if parent is not None:
            parent.remove(prop)


def _our_description(tree: etree._ElementTree) -> etree._Element:
    """A new rdf:Description for the properties tagger adds (RDF allows several; each tool merges them)."""
    rdf = _rdf(tree.getroot())
    assert rdf is not None
    nsmap = {p: u for p, u in _NSMAP.items() if p not in ("x", "rdf")}
    desc = etree.SubElement(rdf, _q(NS_RDF, "Description"), nsmap=nsmap)  # type: ignore[arg-type]
    desc.set(_q(NS_RDF, "about"), "")
    return desc


def _property(tree: etree._ElementTree, ns: str, name: str) -> etree._Element | None:
    for desc in _descriptions(tree):
        found = desc.find(_q(ns, name))
        if found is not None:
            return found
    return None


def _property_or_new(tree: etree._ElementTree, desc: etree._Element, ns: str, name: str) -> etree._Element:
    found = _property(tree, ns, name)
    return found if found is not None else _new_property(desc, ns, name, "Bag")


def _new_property(desc: etree._Element, ns: str, name: str, kind: str) -> etree._Element:
    prop = etree.SubElement(desc, _q(ns, name))
    etree.SubElement(prop, _q(NS_RDF, kind))
    return prop


def _append(prop: etree._Element, values: Iterable[str]) -> None:
    containers = [c for c in prop if isinstance(c.tag, str) and c.tag.startswith(f"{{{NS_RDF}}}")]
    container = containers[0] if containers else etree.SubElement(prop, _q(NS_RDF, "Bag"))
    present = {(li.text or "").strip() for li in container}
    for value in values:
        if value not in present:
            etree.SubElement(container, _q(NS_RDF, "li")).text = value
            present.add(value)


def _set_simple(desc: etree._Element, name: str, value: str) -> None:
    etree.SubElement(desc, _q(NS_TAGGER, name)).text = value


def _set_bag(desc: etree._Element, name: str, values: Sequence[str]) -> None:
    if values:
        _append(_new_property(desc, NS_TAGGER, name, "Bag"), values)


def sidecar_key(key: str, naming: str) -> str:
    """The sidecar's key beside an image's: `photo.jpg.xmp` (darktable, digiKam's default) or `photo.xmp`
    (Lightroom, Capture One, Bridge)."""
    if naming == "photo.jpg.xmp":
        return key + ".xmp"
    if naming == "photo.xmp":
        slash, dot = key.rfind("/"), key.rfind(".")
        return (key[:dot] if dot > slash + 1 else key) + ".xmp"
    raise ValueError(f"sidecar naming {naming!r}: photo.jpg.xmp or photo.xmp")


SIDECAR_NAMINGS = ("photo.jpg.xmp", "photo.xmp")
