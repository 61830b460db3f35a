"""Draw packaging/icon.png, the bundle's icon: a still picture (sun over hills) turning into a video
(a play mark). Run it again after changing the drawing: ``.venv/bin/python packaging/make_icon.py``."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 512
SCALE = 4  # drawn large and scaled down: smooth edges without an anti-aliasing library


def draw(size: int = SIZE) -> Image.Image:
    big = size * SCALE
    sky = Image.new("RGB", (big, big))
    top, bottom = (38, 52, 120), (247, 146, 86)
    pixels = ImageDraw.Draw(sky)
    for y in range(big):
        t = y / (big - 1)
        pixels.line(
            [(0, y), (big, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        )
    art = ImageDraw.Draw(sky)
    u = big / 100
    art.ellipse([58 * u, 30 * u, 82 * u, 54 * u], fill=(255, 214, 120))
    art.polygon(
        [
            (0, 78 * u),
            (30 * u, 52 * u),
            (55 * u, 74 * u),
            (75 * u, 60 * u),
            (100 * u, 80 * u),
            (100 * u, 100 * u),
            (0, 100 * u),
        ],
        fill=(44, 38, 72),
    )
    art.polygon([(30 * u, 34 * u), (30 * u, 66 * u), (56 * u, 50 * u)], fill=(255, 255, 255))
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, big - 1, big - 1], radius=round(22 * u), fill=255)
    icon = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    icon.paste(sky, (0, 0), mask)
    return icon.resize((size, size), Image.Resampling.LANCZOS)


if __name__ == "__main__":
    out = Path(__file__).with_name("icon.png")
    draw().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")  # noqa: T201 (a script's output)
