"""The dataset layer every stage reads: VOC XML, ILSVRC DET, COCO JSON and YOLO txt.

A :class:`Dataset` is a list of :class:`ImageRecord` (image path, size and its gt boxes)
plus the class list and, for ILSVRC, the blacklist of image/class pairs that evaluation
ignores. Boxes stay in the annotation's own pixel coordinates.

Real annotations are imperfect, and the rules are the same for every format:

* a degenerate box (``xmax <= xmin`` or ``ymax <= ymin``) is skipped with a warning
  naming the file and the object;
* a box reaching outside the image is clipped to it, with a warning;
* a missing image, an unreadable annotation or a class not in the class list is a
  :class:`DatasetError` naming the file.

Imports numpy and the standard library only.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from .boxes import clip_boxes, is_degenerate
from .errors import DatasetError

log = logging.getLogger(__name__)

FORMATS = ("voc", "ilsvrc", "coco", "yolo")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG")


@dataclass
class ImageRecord:
    image_id: str
    path: str
    width: int
    height: int
    boxes: np.ndarray                       # (N, 4) float64, xmin ymin xmax ymax
    labels: np.ndarray                      # (N,) int64, index into Dataset.classes
    difficult: np.ndarray                   # (N,) bool (VOC difficult, COCO iscrowd)
    truncated: np.ndarray                   # (N,) bool
    annotation: str = ""                    # the file the boxes came from


@dataclass
class GroundTruth:
    """All gt objects of a dataset as flat arrays (what the evaluator vectorizes over)."""
    image: np.ndarray                       # (M,) int64 index into Dataset.images
    labels: np.ndarray                      # (M,) int64
    boxes: np.ndarray                       # (M, 4) float64
    difficult: np.ndarray                   # (M,) bool


@dataclass
class Dataset:
    root: str
    split: str
    format: str
    classes: list[str]
    images: list[ImageRecord]
    display_names: dict[str, str] = field(default_factory=dict)
    blacklist: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    warnings: list[str] = field(default_factory=list)
    coco_json: str | None = None            # the source JSON, for the coco metric
    category_names: dict[int, str] = field(default_factory=dict)   # COCO category id -> class

    def __len__(self) -> int:
        return len(self.images)

    def display_name(self, cls: str) -> str:
        return self.display_names.get(cls, cls)

    def image_index(self) -> dict[str, int]:
        return {rec.image_id: i for i, rec in enumerate(self.images)}

    def class_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def ground_truth(self) -> GroundTruth:
        counts = [len(r.labels) for r in self.images]
        def cat(arrs, dtype, shape=(0,)):
            return np.concatenate(arrs).astype(dtype) if arrs else np.zeros(shape, dtype)
        return GroundTruth(
            image=np.repeat(np.arange(len(self.images), dtype=np.int64), counts),
            labels=cat([r.labels for r in self.images], np.int64),
            boxes=cat([r.boxes for r in self.images], np.float64, (0, 4)).reshape(-1, 4),
            difficult=cat([r.difficult for r in self.images], bool),
        )


# ------------------------------------------------------------------ loading entry point
def detect_format(root: str) -> str:
    if os.path.isfile(root) and root.endswith(".json"):
        return "coco"
    if os.path.isfile(os.path.join(root, "data.yaml")):
        return "yolo"
    if os.path.isdir(os.path.join(root, "Annotations", "DET")):
        return "ilsvrc"
    if os.path.isdir(os.path.join(root, "Annotations")):
        return "voc"
    if glob.glob(os.path.join(root, "annotations", "*.json")):
        return "coco"
    raise DatasetError(
        f"{root}: not a dataset directory (expected VOC 'Annotations/' + 'ImageSets/Main/', "
        "ILSVRC 'Annotations/DET/', COCO 'annotations/*.json', or YOLO 'data.yaml')")


def load_dataset(root: str, split: str, classes: list[str] | None = None, fmt: str = "auto",
                 synsets: str | None = None, blacklist: str | None = None,
                 image_root: str | None = None) -> Dataset:
    """Read split ``split`` of the dataset at ``root`` (format detected unless given).

    ``classes`` fixes the class list and its order (from a config); without it the
    classes come from the data in a stable order (sorted names, the synset map's order
    for ILSVRC, category id order for COCO).
    """
    if not os.path.exists(root):
        raise DatasetError(f"{root}: no such dataset directory")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt == "voc":
        return load_voc(root, split, classes)
    if fmt == "ilsvrc":
        return load_ilsvrc(root, split, classes, synsets=synsets, blacklist=blacklist)
    if fmt == "coco":
        return load_coco(root, split, classes, image_root=image_root)
    if fmt == "yolo":
        return load_yolo(root, split, classes)
    raise DatasetError(f"unknown dataset format {fmt!r} (choose from {', '.join(FORMATS)})")


def split_exists(root: str, split: str, fmt: str = "auto") -> bool:
    """Whether ``split`` can be read at ``root`` (VOC/ILSVRC split file, COCO json, YOLO data.yaml key)."""
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt == "yolo":
        try:
            _yolo_split_dir(root, split)
            return True
        except DatasetError:
            return False
    if fmt == "voc":
        return os.path.isfile(os.path.join(root, "ImageSets", "Main", f"{split}.txt"))
    if fmt == "ilsvrc":
        return os.path.isfile(os.path.join(root, "ImageSets", "DET", f"{split}.txt"))
    return os.path.isfile(os.path.join(root, "annotations", f"instances_{split}.json"))


def _subset(dataset: Dataset, keep: list[int], split: str) -> Dataset:
    import dataclasses
    return dataclasses.replace(dataset, split=split, images=[dataset.images[i] for i in keep],
                               blacklist=np.zeros((0, 2), np.int64), warnings=list(dataset.warnings))


def split_dataset(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(the rest, a seeded ``fraction`` of the images), both in the original order."""
    rng = np.random.default_rng(seed)
    n = len(dataset.images)
    held = set(rng.choice(n, max(1, int(round(n * fraction))), replace=False).tolist())
    rest = [i for i in range(n) if i not in held]
    return (_subset(dataset, rest, dataset.split),
            _subset(dataset, sorted(held), f"{dataset.split}-held-out"))


def subsample(dataset: Dataset, limit: int, seed: int = 0) -> Dataset:
    """At most ``limit`` images, a seeded choice in the original order."""
    if len(dataset.images) <= limit:
        return dataset
    keep = sorted(np.random.default_rng(seed).choice(len(dataset.images), limit, replace=False).tolist())
    return _subset(dataset, keep, dataset.split)


# ------------------------------------------------------------------ shared helpers
def read_split(path: str, is_split: bool = True) -> list[list[str]]:
    """Lines of an ImageSets file, split on white space (blank lines dropped). For a
    split (``is_split``) a missing file names the splits that exist, and an empty one or
    an id listed twice (its objects would count twice) is an error."""
    try:
        with open(path) as f:
            lines = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        if not is_split:
            raise DatasetError(f"{path}: no such file") from None
        folder = os.path.dirname(path)
        have = sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".txt")) \
            if os.path.isdir(folder) else []
        raise DatasetError(f"{path}: no such split (splits here: {', '.join(have) or 'none'})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read split file ({exc.strerror})") from None
    if not is_split:
        return lines
    if not lines:
        raise DatasetError(f"{path}: the split lists no images")
    seen = set()
    for line in lines:
        if line[0] in seen:
            raise DatasetError(f"{path}: image id {line[0]!r} is listed twice")
        seen.add(line[0])
    return lines


@dataclass
class _RawObject:
    name: str
    box: list[float]
    difficult: bool = False
    truncated: bool = False


def _parse_voc_xml(path: str) -> tuple[int, int, str, list[_RawObject]]:
    """(width, height, filename, objects) of one VOC/ILSVRC annotation file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DatasetError(f"{path}: unreadable annotation ({exc})") from None

    def num(node, tag, default=None):
        el = node.find(tag)
        if el is None or el.text is None or not el.text.strip():
            if default is None:
                raise DatasetError(f"{path}: missing <{tag}>")
            return default
        try:
            return float(el.text)
        except ValueError:
            raise DatasetError(f"{path}: <{tag}> is not a number: {el.text!r}") from None

    size = root.find("size")
    width = int(num(size, "width", 0)) if size is not None else 0
    height = int(num(size, "height", 0)) if size is not None else 0
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if not name or bnd is None:
            raise DatasetError(f"{path}: an <object> without <name> or <bndbox>")
        box = [num(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(_RawObject(name, box, bool(int(num(obj, "difficult", 0))),
                                  bool(int(num(obj, "truncated", 0)))))
    return width, height, (root.findtext("filename") or "").strip(), objects


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image  # only for annotations without a <size>: reads the header
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image size ({exc})") from None


def _make_record(image_id, path, width, height, objects, class_index, source, warnings,
                 allow_new_classes):
    """Validate raw objects into an ImageRecord (the degenerate/clip/unknown rules). The
    image's own header gives its size: an annotation whose <size> disagrees is warned
    about (boxes are then clipped to the real image, and flips use the real width)."""
    real_w, real_h = _image_size(path)
    if width > 0 and height > 0 and (width, height) != (real_w, real_h):
        msg = (f"{source}: <size> says {int(width)}x{int(height)} but {os.path.basename(path)} is "
               f"{real_w}x{real_h}; using the image's size")
        warnings.append(msg)
        log.warning(msg)
    width, height = real_w, real_h
    keep, labels = [], []
    for k, obj in enumerate(objects):
        if obj.name not in class_index:
            if not allow_new_classes:
                raise DatasetError(f"{source}: object {k} has class {obj.name!r}, which is "
                                   f"not in the class list ({', '.join(class_index)})")
            class_index[obj.name] = len(class_index)
        box = np.asarray(obj.box, np.float64)
        if is_degenerate(box):
            msg = (f"{source}: object {k} ({obj.name}) has a degenerate box "
                   f"{[int(v) if v.is_integer() else v for v in obj.box]}; skipped")
            warnings.append(msg)
            log.warning(msg)
            continue
        clipped = clip_boxes(box, width, height)
        if not np.array_equal(clipped, box):
            msg = (f"{source}: object {k} ({obj.name}) box {obj.box} reaches outside the "
                   f"{width}x{height} image; clipped to {clipped.tolist()}")
            warnings.append(msg)
            log.warning(msg)
            if is_degenerate(clipped):
                continue
        keep.append((clipped, obj))
        labels.append(class_index[obj.name])
    return ImageRecord(
        image_id=image_id, path=path, width=int(width), height=int(height),
        boxes=np.array([b for b, _ in keep], np.float64).reshape(-1, 4),
        labels=np.array(labels, np.int64),
        difficult=np.array([o.difficult for _, o in keep], bool),
        truncated=np.array([o.truncated for _, o in keep], bool),
        annotation=source)


def _find_image(directory: str, stem: str, filename: str = "") -> str | None:
    for candidate in ([os.path.join(directory, filename)] if filename else []) + \
            [os.path.join(directory, stem + ext) for ext in IMAGE_EXTENSIONS]:
        if os.path.isfile(candidate):
            return candidate
    return None


def _missing_images_error(root: str, missing: list[str]) -> DatasetError:
    shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
    return DatasetError(f"{root}: {len(missing)} image(s) of the split are missing: {shown}")


def _finish_classes(class_index: dict[str, int], fixed: bool, images: list[ImageRecord]):
    """With classes taken from the data, renumber them in sorted order (stable)."""
    if fixed:
        return list(class_index)
    order = sorted(class_index)
    remap = np.array([order.index(c) for c in class_index], np.int64)
    for rec in images:
        rec.labels = remap[rec.labels] if len(rec.labels) else rec.labels
    return order


# ------------------------------------------------------------------ VOC
def load_voc(root: str, split: str, classes: list[str] | None = None) -> Dataset:
    ids = [line[0] for line in read_split(os.path.join(root, "ImageSets", "Main", f"{split}.txt"))]
    class_index = {c: i for i, c in enumerate(classes or [])}
    warnings: list[str] = []
    images, missing = [], []
    for image_id in ids:
        xml = os.path.join(root, "Annotations", f"{image_id}.xml")
        width, height, filename, objects = _parse_voc_xml(xml)
        path = _find_image(os.path.join(root, "JPEGImages"), image_id, filename)
        if path is None:
            missing.append(os.path.join(root, "JPEGImages", filename or image_id + ".jpg"))
            continue
        images.append(_make_record(image_id, path, width, height, objects, class_index, xml,
                                   warnings, allow_new_classes=classes is None))
    if missing:
        raise _missing_images_error(root, missing)
    return Dataset(root=root, split=split, format="voc",
                   classes=_finish_classes(class_index, classes is not None, images),
                   images=images, warnings=warnings)


# ------------------------------------------------------------------ ILSVRC DET
def _devkit_file(root: str, pattern: str) -> str | None:
    for base in (root, os.path.dirname(os.path.abspath(root))):
        hits = sorted(glob.glob(os.path.join(base, "devkit", "data", pattern)))
        if hits:
            return hits[-1]
    return None


def read_synset_map(path: str) -> tuple[list[str], dict[str, str]]:
    """``map_det.txt``-style file: lines ``<wnid> [<index>] <readable name ...>``."""
    wnids, names = [], {}
    for k, parts in enumerate(read_split(path, is_split=False)):
        if len(parts) < 2:
            raise DatasetError(f"{path}: line {k + 1}: expected '<wnid> [index] <name>'")
        wnid = parts[0]
        rest = parts[2:] if parts[1].isdigit() and len(parts) > 2 else parts[1:]
        wnids.append(wnid)
        names[wnid] = " ".join(rest)
    return wnids, names


def load_ilsvrc(root: str, split: str, classes: list[str] | None = None,
                synsets: str | None = None, blacklist: str | None = None) -> Dataset:
    """ILSVRC DET: ``ImageSets/DET/<split>.txt`` lines ``<image> <index>``,
    ``Annotations/DET/<split>/<image>.xml``, ``Data/DET/<split>/<image>.JPEG``.

    The synset map (``devkit/data/map_det.txt``) and, for validation splits, the
    blacklist (``devkit/data/*det_validation_blacklist.txt``) are found beside the data
    when not given.
    """
    synsets = synsets or _devkit_file(root, "map_det.txt")
    display: dict[str, str] = {}
    if synsets:
        wnids, display = read_synset_map(synsets)
        classes = classes or wnids
    lines = read_split(os.path.join(root, "ImageSets", "DET", f"{split}.txt"))
    class_index = {c: i for i, c in enumerate(classes or [])}
    warnings: list[str] = []
    images, missing, index_of = [], [], {}
    for k, parts in enumerate(lines):
        image_id = parts[0]
        index_of[int(parts[1]) if len(parts) > 1 and parts[1].lstrip("-").isdigit() else k + 1] = len(images)
        xml = os.path.join(root, "Annotations", "DET", split, f"{image_id}.xml")
        path = _find_image(os.path.join(root, "Data", "DET", split), image_id)
        if path is None:
            missing.append(os.path.join(root, "Data", "DET", split, image_id + ".JPEG"))
            continue
        # ILSVRC training negatives have no annotation file: an image with no objects.
        width, height, _, objects = _parse_voc_xml(xml) if os.path.exists(xml) else (0, 0, "", [])
        images.append(_make_record(image_id, path, width, height, objects, class_index,
                                   xml, warnings, allow_new_classes=classes is None))
    if missing:
        raise _missing_images_error(root, missing)
    class_list = _finish_classes(class_index, classes is not None, images)

    pairs = np.zeros((0, 2), np.int64)
    blacklist = blacklist or (_devkit_file(root, "*det_validation_blacklist.txt")
                              if split.startswith("val") else None)
    if blacklist:
        cidx = {c: i for i, c in enumerate(class_list)}
        rows = []
        for n, parts in enumerate(read_split(blacklist, is_split=False)):
            if len(parts) != 2 or not parts[0].isdigit():
                raise DatasetError(f"{blacklist}: line {n + 1}: expected '<image index> <wnid>'")
            if int(parts[0]) in index_of and parts[1] in cidx:
                rows.append((index_of[int(parts[0])], cidx[parts[1]]))
        pairs = np.array(rows, np.int64).reshape(-1, 2)
        log.info("blacklist %s: %d image/class pairs in this split", blacklist, len(pairs))
    return Dataset(root=root, split=split, format="ilsvrc", classes=class_list, images=images,
                   display_names=display, blacklist=pairs, warnings=warnings)


# ------------------------------------------------------------------ COCO
def load_coco(root: str, split: str, classes: list[str] | None = None,
              image_root: str | None = None) -> Dataset:
    """COCO: ``root/annotations/instances_<split>.json`` with images in ``root/<split>/``,
    or ``root`` a JSON file with images in ``image_root`` (default: beside the file).

    Image ids become strings (``"397133"``); ``iscrowd`` objects are kept as ``difficult``.
    """
    if os.path.isfile(root):
        json_path, image_root = root, image_root or os.path.dirname(os.path.abspath(root))
    else:
        json_path = os.path.join(root, "annotations", f"instances_{split}.json")
        image_root = image_root or os.path.join(root, split)
    try:
        with open(json_path) as f:
            data = json.load(f)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        images_json, anns = data["images"], data.get("annotations", [])
    except OSError as exc:
        raise DatasetError(f"{json_path}: cannot read ({exc.strerror})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{json_path}: not a COCO annotation file ({exc})") from None
    cat_name = {c["id"]: c["name"] for c in cats}
    class_index = {c: i for i, c in enumerate(classes or [cat_name[c["id"]] for c in cats])}
    by_image: dict[int, list[_RawObject]] = {}
    for a in anns:
        if a.get("category_id") not in cat_name or len(a.get("bbox", ())) != 4:
            raise DatasetError(f"{json_path}: annotation {a.get('id')} has an unknown "
                               f"category {a.get('category_id')} or no 4-number bbox")
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], []).append(
            _RawObject(cat_name[a["category_id"]], [x, y, x + w, y + h], bool(a.get("iscrowd", 0))))
    warnings: list[str] = []
    images, missing = [], []
    for im in images_json:
        path = os.path.join(image_root, im["file_name"])
        if not os.path.isfile(path):
            missing.append(path)
            continue
        images.append(_make_record(str(im["id"]), path, im.get("width", 0), im.get("height", 0),
                                   by_image.get(im["id"], []), class_index,
                                   f"{json_path} (image {im['id']})", warnings,
                                   allow_new_classes=False))
    if missing:
        raise _missing_images_error(image_root, missing)
    return Dataset(root=root, split=split, format="coco", classes=list(class_index),
                   images=images, warnings=warnings, coco_json=json_path, category_names=cat_name)


# ------------------------------------------------------------------ YOLO
YOLO_SPLIT_ALIASES = {"val": ("val", "valid"), "valid": ("valid", "val")}


def _yolo_meta(root: str) -> dict:
    import yaml
    path = os.path.join(root, "data.yaml")
    try:
        with open(path) as f:
            meta = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    names = meta.get("names")
    if isinstance(names, dict):                       # {0: cat, 1: dog}
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: 'names' must list the class names")
    meta["names"] = [str(n) for n in names]
    return meta


def _yolo_split_dir(root: str, split: str) -> str:
    meta = _yolo_meta(root)
    key = next((k for k in YOLO_SPLIT_ALIASES.get(split, (split,)) if meta.get(k)), None)
    if key is None:
        have = [k for k in ("train", "val", "valid", "test") if meta.get(k)]
        raise DatasetError(f"{os.path.join(root, 'data.yaml')}: no split {split!r} (splits here: {', '.join(have)})")
    base = meta.get("path") or root
    base = base if os.path.isabs(base) else os.path.join(root, base)
    folder = os.path.normpath(os.path.join(base, str(meta[key])))
    if not os.path.isdir(folder):                     # Roboflow exports write ../train/images from a subfolder
        alt = os.path.normpath(os.path.join(root, str(meta[key]).replace("../", "", 1)))
        if os.path.isdir(alt):
            folder = alt
        else:
            raise DatasetError(f"{os.path.join(root, 'data.yaml')}: split {split!r} points at {folder}, "
                               f"which is not a folder")
    return folder


def load_yolo(root: str, split: str, classes: list[str] | None = None) -> Dataset:
    """YOLO txt (ultralytics, Roboflow exports): ``data.yaml`` with ``names`` and one image
    folder per split; labels in the parallel ``labels/`` folder, one ``<stem>.txt`` per
    image with lines ``class cx cy w h`` normalized to [0, 1]. Image ids are file stems;
    boxes come back in pixels (the image header gives the size). An image without a
    label file has no objects."""
    meta = _yolo_meta(root)
    names = meta["names"]
    image_dir = _yolo_split_dir(root, split)
    parts = image_dir.split(os.sep)              # .../images/<split> -> .../labels/<split> (the last "images")
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
    label_dir = os.sep.join(parts)
    files = sorted(f for f in os.listdir(image_dir) if os.path.splitext(f)[1] in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"{image_dir}: split {split!r} has no images")
    class_index = {c: i for i, c in enumerate(classes or names)}
    warnings: list[str] = []
    images, seen = [], set()
    for name in files:
        stem = os.path.splitext(name)[0]
        if stem in seen:
            raise DatasetError(f"{image_dir}: two images share the id {stem!r} (file names differ only in extension)")
        seen.add(stem)
        path = os.path.join(image_dir, name)
        width, height = _image_size(path)
        label_path = os.path.join(label_dir, stem + ".txt")
        objects = []
        if os.path.exists(label_path):
            with open(label_path) as f:
                for n, line in enumerate(f):
                    fields = line.split()
                    if not fields:
                        continue
                    try:
                        k, cx, cy, w, h = int(fields[0]), *map(float, fields[1:5])
                        if len(fields) < 5 or not 0 <= k < len(names):
                            raise ValueError
                    except (ValueError, TypeError):
                        raise DatasetError(f"{label_path}: line {n + 1}: expected 'class cx cy w h' with a class "
                                           f"index below {len(names)}, got {line.strip()!r}") from None
                    objects.append(_RawObject(names[k], [(cx - w / 2) * width, (cy - h / 2) * height,
                                                         (cx + w / 2) * width, (cy + h / 2) * height]))
        images.append(_make_record(stem, path, width, height, objects, class_index, label_path, warnings,
                                   allow_new_classes=False))
    return Dataset(root=root, split=split, format="yolo", classes=list(class_index), images=images,
                   warnings=warnings)

