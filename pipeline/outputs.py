"""What detect.py reads and writes besides images: inputs (files, folders, quoted globs,
videos) and detection files in the formats other tools take.

Formats (``detect.py --format``):

* ``json``: this project's rows ``{"image", "label", "score", "box"}`` (evaluate.py reads them);
* ``coco``: COCO's results ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``,
  ids looked up in a COCO dataset given with ``--dataset`` (else numeric file stems, and
  category ids 1..C in class order);
* ``csv``: ``image,label,score,x1,y1,x2,y2``;
* ``voc-xml``: one Pascal VOC annotation per image in a folder (pre-annotations for
  labelling tools such as CVAT or labelImg).
"""
from __future__ import annotations

import glob
import os

from core.errors import UserError
from core.fileio import atomic_write, write_json

FORMATS = ("json", "coco", "csv", "voc-xml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def expand_inputs(items: list[str], recursive: bool = False) -> list[str]:
    """Files as given; folders to the images in them (``recursive``: and below); a pattern
    that is not a file (quoted globs, ``**`` with ``recursive``) to what it matches, in
    sorted order. A folder or pattern that yields nothing is an error naming it."""
    out = []
    for item in items:
        if os.path.isdir(item):
            pattern = os.path.join(item, "**", "*") if recursive else os.path.join(item, "*")
            found = sorted(p for p in glob.glob(pattern, recursive=recursive)
                           if os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not found:
                raise UserError(f"{item}: no images in this folder{'' if recursive else ' (--recursive looks below)'}")
            out += found
        elif not os.path.exists(item) and glob.has_magic(item):
            found = sorted(p for p in glob.glob(item, recursive=recursive) if os.path.isfile(p))
            if not found:
                raise UserError(f"{item}: the pattern matches no file")
            out += found
        else:
            out.append(item)                 # a missing file is reported when it is read
    return out


def is_video(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def video_frames(path: str):
    """(frame number, RGB frame) of a video, via OpenCV; fps as ``video_frames.fps``."""
    import cv2
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise UserError(f"{path}: not a readable video")
    try:
        n = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield n, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            n += 1
        if n == 0:
            raise UserError(f"{path}: no frame could be decoded")
    finally:
        cap.release()


class VideoOut:
    """An annotated copy of a video (mp4v), frame by frame."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps, self.writer = path, fps or 25.0, None

    def write(self, frame_rgb) -> None:
        import cv2
        if self.writer is None:
            h, w = frame_rgb.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def annotate(image_rgb, found):
    """The image with ``found`` (ImageDetections) drawn on it, as an array."""
    from core.visualize import render_detections
    return render_detections(image_rgb, found.boxes, found.scores, found.labels, found.class_names)


def write_detection_file(path: str, fmt: str, results: list, sizes: dict, coco_json: str | None = None) -> None:
    """``results``: ImageDetections of every image; ``sizes``: image id -> (width, height);
    ``coco_json``: a COCO annotation file whose ids ``--format coco`` uses."""
    from core.structures import Detections, write_detections
    if fmt == "json":
        write_detections(path, Detections.concatenate([r.to_detections() for r in results]))
    elif fmt == "csv":
        with atomic_write(path) as f:
            f.write("image,label,score,x1,y1,x2,y2\n")
            for r in results:
                for b, s, name in zip(r.boxes, r.scores, r.label_names):
                    f.write(f"{r.image_id},{name},{s:.6f},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f}\n")
    elif fmt == "coco":
        write_json(path, coco_results(results, coco_json), indent=None)
    elif fmt == "voc-xml":
        os.makedirs(path, exist_ok=True)
        for r in results:
            with atomic_write(os.path.join(path, f"{r.image_id}.xml")) as f:
                f.write(voc_xml(r, *sizes[r.image_id]))
    else:
        raise UserError(f"--format {fmt}: choose from {', '.join(FORMATS)}")


def coco_results(results: list, coco_json: str | None = None) -> list[dict]:
    """COCO results rows; ids from ``coco_json`` (file stem -> image id, class -> category
    id), else numeric file stems and categories 1..C in the model's class order."""
    image_ids, category = {}, None
    if coco_json:
        import json
        try:
            with open(coco_json) as f:
                data = json.load(f)
            image_ids = {os.path.splitext(os.path.basename(im["file_name"]))[0]: int(im["id"])
                         for im in data["images"]}
            category = {c["name"]: int(c["id"]) for c in data["categories"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{coco_json}: not a COCO annotation file ({exc})") from None
    rows = []
    for r in results:
        image_id = image_ids.get(r.image_id, r.image_id)
        if not isinstance(image_id, int):
            if not str(image_id).isdigit():
                raise UserError(f"--format coco: image {r.image_id!r} has no numeric COCO id; pass the COCO "
                                f"annotation file with --dataset to look the ids up")
            image_id = int(image_id)
        for b, s, k, name in zip(r.boxes, r.scores, r.labels, r.label_names):
            if category is not None and name not in category:
                raise UserError(f"{coco_json}: has no category named {name!r}")
            rows.append({"image_id": image_id, "category_id": category[name] if category else int(k) + 1,
                         "score": round(float(s), 6),
                         "bbox": [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2),
                                  round(float(b[3] - b[1]), 2)]})
    return rows


def voc_xml(result, width: int, height: int) -> str:
    from xml.sax.saxutils import escape
    parts = [f"<annotation><filename>{escape(result.image_id)}</filename><size><width>{width}</width>"
             f"<height>{height}</height><depth>3</depth></size>"]
    for b, s, name in zip(result.boxes, result.scores, result.label_names):
        parts.append(f"<object><name>{escape(name)}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>0</difficult><score>{s:.4f}</score><bndbox>"
                     + "".join(f"<{t}>{round(float(v))}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), b))
                     + "</bndbox></object>")
    return "\n".join(parts) + "</annotation>\n"
