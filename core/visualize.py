"""Drawing detections on an image (PIL)."""
from __future__ import annotations

import os

import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40)]


def draw_detections(image_rgb: np.ndarray, boxes, scores, labels, class_names, path: str) -> None:
    """Write the image with the detections drawn on it to ``path`` (JPEG or PNG)."""
    from PIL import Image

    from .fileio import atomic_write
    im = Image.fromarray(render_detections(image_rgb, boxes, scores, labels, class_names))
    fmt = "PNG" if os.path.splitext(path)[1].lower() == ".png" else "JPEG"
    with atomic_write(path, "wb") as f:
        im.save(f, format=fmt, quality=92)


def render_detections(image_rgb: np.ndarray, boxes, scores, labels, class_names) -> np.ndarray:
    """A copy of ``image_rgb`` (H, W, 3) with boxes, class names and scores drawn, best on top."""
    from PIL import Image, ImageDraw, ImageFont
    im = Image.fromarray(image_rgb)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    line = max(1, round(max(im.size) / 400))
    for box, score, label in sorted(zip(boxes, scores, labels), key=lambda d: d[1]):
        colour = PALETTE[int(label) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        text = f"{class_names[int(label)]} {score:.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=font)
        ty = y1 - (ty2 - ty1) - 2 if y1 - (ty2 - ty1) - 2 >= 0 else y1
        draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 4, ty + (ty2 - ty1) + 2], fill=colour)
        draw.text((x1 + 2, ty), text, fill=(255, 255, 255), font=font)
    return np.asarray(im)
