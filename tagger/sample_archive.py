"""A small synthetic archive of "stills" with known tags, for the demo and the tests.

Each tag is something a CNN can see (a shape, a pattern, the lighting, the colour),
so a model trained on part of the archive can be measured honestly on the rest.

Two cases a model must notice are made on request: posters (`generate_posters`), a second visual domain
unlike the stills (large text on flat paper, line art), for the unfamiliarity score; and deliberately
wrong labels (`flip_labels`), with the truth kept beside them, for the label-error ranking.
"""

from __future__ import annotations

import colorsys
import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TAGS = ("black-and-white", "night", "circle", "rectangle", "triangle", "stripes", "frame", "dots")
# Mixed aspect ratios, like real stills: 4:3, 16:9 and 2.39:1.
SHAPES = ((160, 120), (192, 108), (215, 90))


@dataclass(frozen=True)
class Still:
    key: str
    tags: tuple[str, ...]


def render(tags: set[str], size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    base = tuple(rng.randint(60, 200) for _ in range(3))
    img = Image.new("RGB", size, base)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(img)
    for y in range(0, h, 4):  # a soft vertical gradient with noise, so backgrounds vary
        shade = tuple(max(0, min(255, c + (y - h // 2) // 3 + rng.randint(-6, 6))) for c in base)
        draw.rectangle([0, y, w, y + 3], fill=shade)  # type: ignore[arg-type]

    def colour() -> tuple[int, int, int]:
        return (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))

    def spot(extent: float) -> tuple[int, int, int]:
        r = int(min(w, h) * extent)
        return rng.randint(r, w - r), rng.randint(r, h - r), r

    if "stripes" in tags:
        c, step = colour(), rng.randint(6, 10)
        for y in range(0, h, step * 2):
            draw.rectangle([0, y, w, y + step - 1], fill=c)
    if "dots" in tags:
        c = colour()
        for _ in range(rng.randint(25, 40)):
            x, y = rng.randint(0, w), rng.randint(0, h)
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
    if "circle" in tags:
        x, y, r = spot(rng.uniform(0.2, 0.3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour(), outline=(0, 0, 0), width=2)
    if "rectangle" in tags:
        x, y, r = spot(rng.uniform(0.2, 0.3))
        draw.rectangle([x - int(r * 1.4), y - r, x + int(r * 1.4), y + r], fill=colour(), outline=(0, 0, 0), width=2)
    if "triangle" in tags:
        x, y, r = spot(rng.uniform(0.22, 0.32))
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour(), outline=(0, 0, 0))
    if "frame" in tags:
        t = max(4, min(w, h) // 10)
        c = colour()
        for box in ([0, 0, w, t], [0, h - t, w, h], [0, 0, t, h], [w - t, 0, w, h]):
            draw.rectangle(box, fill=c)
    if "night" in tags:
        img = Image.eval(img, lambda v: int(v * 0.3))
        img = Image.merge(
            "RGB", (img.getchannel(0), img.getchannel(1), Image.eval(img.getchannel(2), lambda v: min(255, v + 25)))
        )
    if "black-and-white" in tags:
        img = img.convert("L").convert("RGB")
    return img


def generate(root: Path, count: int, *, seed: int = 0, quality: int = 90) -> list[Still]:
    """Write `count` JPEG stills under root/stills/ and root/labels.csv; return what was written."""
    rng = random.Random(seed)
    (root / "stills").mkdir(parents=True, exist_ok=True)
    stills = []
    for i in range(count):
        tags = {t for t in TAGS if rng.random() < (0.25 if t in ("black-and-white", "night") else 0.3)}
        if not tags - {"black-and-white", "night"}:
            tags.add(rng.choice(TAGS[2:]))
        img = render(tags, rng.choice(SHAPES), rng)
        key = f"stills/still_{i:05d}.jpg"
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        (root / key).write_bytes(buf.getvalue())
        stills.append(Still(key, tuple(sorted(tags))))
    write_labels(root / "labels.csv", stills)
    return stills


def render_poster(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A poster or a printed page: flat coloured paper, a headline in large letters, line art. None of the
    stills' gradients, noise or filled shapes; in colour, so it does not pass for a black-and-white still."""
    w, h = size
    hue = rng.random()
    paper = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.35, 0.7), rng.uniform(0.85, 1.0)))
    ink = tuple(
        int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1.0, rng.uniform(0.6, 1.0), rng.uniform(0.2, 0.5))
    )
    img = Image.new("RGB", size, paper)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(6, 14)):  # line art: thin strokes and open curves
        x0, y0 = rng.randint(0, w), rng.randint(0, h)
        x1, y1 = rng.randint(0, w), rng.randint(0, h)
        if rng.random() < 0.5:
            draw.line([x0, y0, x1, y1], fill=ink, width=1)  # type: ignore[arg-type]
        else:
            box = [min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1]
            draw.arc(box, rng.randint(0, 180), rng.randint(180, 360), fill=ink, width=1)  # type: ignore[arg-type]
    font = ImageFont.load_default(size=rng.randint(h // 4, h // 3))
    word = "".join(rng.choice("ABCDEFGHKLMNPRSTUWXYZ") for _ in range(rng.randint(3, 6)))
    draw.text((rng.randint(2, max(3, w // 6)), rng.randint(2, max(3, h // 3))), word, fill=ink, font=font)  # type: ignore[arg-type]
    return img


def generate_posters(root: Path, count: int, *, seed: int = 0, quality: int = 90) -> list[str]:
    """Write `count` JPEG posters under root/posters/ (no labels: they have none of the stills' tags to learn);
    return their keys."""
    rng = random.Random(f"posters-{seed}")
    (root / "posters").mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(count):
        key = f"posters/poster_{i:05d}.jpg"
        buf = io.BytesIO()
        render_poster(rng.choice(SHAPES), rng).save(buf, "JPEG", quality=quality)
        (root / key).write_bytes(buf.getvalue())
        keys.append(key)
    return keys


@dataclass(frozen=True)
class Flip:
    """One deliberately wrong label: `tag` on `key` was `present` in truth and written the other way."""

    key: str
    tag: str
    present: bool


def flip_labels(stills: list[Still], share: float, *, seed: int = 0) -> tuple[list[Still], list[Flip]]:
    """`share` of the stills (rounded, at least one when share > 0) each get one tag's label flipped: a tag they
    show is left out, or one they do not show is added. Returns the stills as labelled and the truth."""
    rng = random.Random(f"flips-{seed}")
    chosen = set(rng.sample(range(len(stills)), max(1, round(share * len(stills))))) if share > 0 else set()
    labelled, flips = [], []
    for i, still in enumerate(stills):
        if i not in chosen:
            labelled.append(still)
            continue
        tag = rng.choice(TAGS)
        present = tag in still.tags
        tags = set(still.tags) - {tag} if present else set(still.tags) | {tag}
        labelled.append(Still(still.key, tuple(sorted(tags))))
        flips.append(Flip(still.key, tag, present))
    return labelled, flips


def write_flips(path: Path, flips: list[Flip]) -> None:
    """The ground truth of the flipped labels: image_id, tag, and whether the still really shows it."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "tag", "truly_present"])
        for f in flips:
            writer.writerow([f.key, f.tag, "yes" if f.present else "no"])


def write_labels(path: Path, stills: list[Still]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "tags"])
        for s in stills:
            writer.writerow([s.key, " ".join(s.tags)])
