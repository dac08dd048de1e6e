"""A small synthetic archive of "stills" with known tags, for the demo and the tests.

Each tag is something a CNN can see (a shape, a pattern, the lighting, the colour),
so a model trained on part of the archive can be measured honestly on the rest.

`generate_bursts` writes shots of near-identical stills, as real archives hold them: consecutive frames
of one shot (the camera pans a few pixels, the grain changes), the same still re-encoded at another JPEG
quality, resized, slightly cropped, colour graded or with subtitles burned in. Each still's shot is
written to groups.csv, the ground truth the duplicate search and the group-aware split are measured on.

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

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

TAGS = ("black-and-white", "night", "circle", "rectangle", "triangle", "stripes", "frame", "dots")
# Mixed aspect ratios, like real stills: 4:3, 16:9 and 2.39:1.
SHAPES = ((160, 120), (192, 108), (215, 90))


@dataclass(frozen=True)
class Still:
    key: str
    tags: tuple[str, ...]
    group: str = ""  # the shot it belongs to (bursts); empty for a still with no near-duplicate
    edit: str = ""  # how it differs from its shot's first frame: one of EDITS, or "" for that frame


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
        tags = _random_tags(rng)
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


# How the stills of one burst differ from its first frame (the kinds of near-duplicate the issue names).
EDITS = ("frame", "requality", "resize", "crop", "grade", "subtitle")
SUBTITLES = ("Where were you last night?", "I never said that.", "[door slams]", "We leave at dawn.", "Not again...")


def generate_bursts(
    root: Path, shots: int, *, seed: int = 0, films: int = 4, quality: int = 90, first: int = 0
) -> list[Still]:
    """Write `shots` bursts of 3 to 9 near-identical stills under root/films/film_FF/shot_SSSS_NN.jpg (each
    shot in one of `films` folders, as an archive files them) and return them, each with its shot as its
    group. A shot's first still is a frame; the others are later frames of it (panned a few pixels, new
    grain) or one of the EDITS of a frame. Tags are the shot's, true of every still of it."""
    rng = random.Random(seed)
    stills = []
    for s in range(first, first + shots):
        tags = _random_tags(rng)
        size = rng.choice(SHAPES)
        scene = render(tags, (size[0] + 24, size[1] + 24), rng)  # a margin for the camera to pan over
        film = f"film_{s % films:02d}"
        group = f"shot_{s:04d}"
        frames: list[Image.Image] = []
        edits = ["frame"] * rng.randint(1, 3) + rng.sample(EDITS[1:], rng.randint(1, 5))
        rng.shuffle(edits)
        edits = ["", *edits]
        for n, edit in enumerate(edits):
            if edit in ("", "frame"):
                img = _frame(scene, size, len(frames), rng)
                frames.append(img)
                q = quality
            else:
                img, q = _edit(rng.choice(frames), edit, quality, rng, bw="black-and-white" in tags)
            key = f"films/{film}/{group}_{n:02d}.jpg"
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=q)
            (root / key).write_bytes(buf.getvalue())
            stills.append(Still(key, tuple(sorted(tags)), group, edit or "frame"))
    return stills


def _random_tags(rng: random.Random) -> set[str]:
    tags = {t for t in TAGS if rng.random() < (0.25 if t in ("black-and-white", "night") else 0.3)}
    if not tags - {"black-and-white", "night"}:
        tags.add(rng.choice(TAGS[2:]))
    return tags


def _frame(scene: Image.Image, size: tuple[int, int], n: int, rng: random.Random) -> Image.Image:
    """Frame n of a shot: the camera pans 2-3 pixels a frame over the scene, and the film grain is new."""
    w, h = size
    dx, dy = 12 + n * rng.randint(2, 3), 12 + n * rng.randint(-1, 1)
    dx, dy = max(0, min(24, dx)), max(0, min(24, dy))
    frame = np.asarray(scene.crop((dx, dy, dx + w, dy + h)), dtype=np.float32)
    grain = np.random.default_rng(rng.getrandbits(32)).normal(0.0, rng.uniform(3, 6), frame.shape[:2])
    return Image.fromarray(np.clip(frame + grain[..., None], 0, 255).astype(np.uint8))


def _edit(img: Image.Image, edit: str, quality: int, rng: random.Random, *, bw: bool) -> tuple[Image.Image, int]:
    """One near-duplicate of `img` and the JPEG quality to save it at."""
    w, h = img.size
    if edit == "frame":
        raise ValueError("a frame is rendered from its scene, not edited")
    if edit == "requality":
        return img, rng.choice((35, 50, 65))
    if edit == "resize":
        f = rng.uniform(0.55, 0.8)
        return img.resize((max(32, int(w * f)), max(32, int(h * f))), Image.Resampling.BICUBIC), quality
    if edit == "crop":
        f = rng.uniform(0.85, 0.93)  # up to 15% off, as a re-framing or a scan's border
        cw, ch = int(w * f), int(h * f)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return img.crop((x, y, x + cw, y + ch)), quality
    if edit == "grade":
        graded = ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15)))
        out = graded.enhance(rng.uniform(0.85, 1.2))
        if not bw:  # a warm or cool tint; a black-and-white still stays without colour
            out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
            tint = Image.new("RGB", out.size, rng.choice(((255, 200, 140), (140, 190, 255))))
            out = Image.blend(out, tint, 0.08)
        return out, quality
    if edit == "subtitle":
        out = img.copy()
        draw = ImageDraw.Draw(out)
        text = rng.choice(SUBTITLES)
        left, top, right, bottom = (int(v) for v in draw.textbbox((0, 0), text))
        x, y = max(2, (w - (right - left)) // 2), h - (bottom - top) - 8
        draw.text(
            (x, y), text, fill=(255, 255, 255) if not bw else (235, 235, 235), stroke_width=1, stroke_fill=(0, 0, 0)
        )
        return out, quality
    raise ValueError(f"unknown edit {edit!r}: one of {', '.join(EDITS)}")


def write_groups(path: Path, stills: list[Still]) -> None:
    """The ground truth of near-duplicates: `image_id,group`, one row per still (a still with no near-duplicate
    is its own group, named after its key)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "group"])
        for s in stills:
            writer.writerow([s.key, s.group or s.key])


def read_groups(path: Path) -> dict[str, str]:
    """groups.csv as key -> group."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["image_id"]: row["group"] for row in csv.DictReader(fh)}
