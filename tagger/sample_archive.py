"""A small synthetic archive of "stills" with known tags, for the demo and the tests.

Each tag is something a CNN can see (a shape, a pattern, the lighting, the colour),
so a model trained on part of the archive can be measured honestly on the rest.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

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


def write_labels(path: Path, stills: list[Still]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "tags"])
        for s in stills:
            writer.writerow([s.key, " ".join(s.tags)])
