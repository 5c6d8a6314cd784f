"""The Python API: load a model (or an ensemble) once, detect in images held anywhere.

    from pipeline import load_detector
    det = load_detector("models/bccd")                 # a model or an ensemble directory
    result = det.predict("blood.jpg")                  # a path, an HxWx3 RGB uint8 array or a PIL image
    result.boxes, result.scores, result.labels, result.class_names
    for r in det.predict_many(paths, progress=True):   # one result per image, in order
        ...

``proposals="paper"`` runs the recipe's own method (selective search + MultiBox in the
bundled recipes), ``"fast"`` MultiBox alone. Proposals are computed fresh unless a
``cache_dir`` is given (worth it when the same images are detected again).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from core.errors import UserError
from core.images import read_image
from core.structures import ImageDetections

# "paper": the recipe's own method; "fast": MultiBox alone; or a method by name
PROPOSAL_PATHS = {"paper": None, "fast": "multibox", "ss": "ss", "multibox": "multibox", "combined": "combined"}


def default_model_dir() -> str:
    """The bundled BCCD model: ``$GOOGLENET_DETECTOR_MODELS/bccd`` when that variable is
    set, else ``models/bccd`` of a source checkout, else the copy a wheel installs under
    ``<prefix>/share/googlenet-detector/models``."""
    import sys
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # a checkout, or site-packages
    installed_prefix = os.path.normpath(os.path.join(here, "..", "..", ".."))  # <prefix>/lib/pythonX.Y/site-packages
    candidates = [os.path.join(here, "models")] + [
        os.path.join(prefix, "share", "googlenet-detector", "models") for prefix in (sys.prefix, installed_prefix)]
    if os.environ.get("GOOGLENET_DETECTOR_MODELS"):
        candidates.insert(0, os.environ["GOOGLENET_DETECTOR_MODELS"])
    for root in candidates:
        if os.path.isdir(os.path.join(root, "bccd")):
            return os.path.join(root, "bccd")
    raise UserError("no bundled model found (looked in " + ", ".join(candidates) + "); pass a model directory, "
                    "or set GOOGLENET_DETECTOR_MODELS to a folder holding bccd/")


def as_rgb_array(image) -> tuple[np.ndarray, str]:
    """(uint8 HxWx3 RGB array, image id) from a path, a numpy array or a PIL image.
    A path is read as viewers show it (EXIF orientation applied)."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        return read_image(path, exif_transpose=True), os.path.splitext(os.path.basename(path))[0]
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UserError(f"an image array must be HxWx3 uint8 RGB, got shape {image.shape} {image.dtype}")
        return image, ""
    try:
        from PIL import Image
    except ImportError:                 # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")), ""
    raise UserError(f"cannot detect in a {type(image).__name__}: pass a path, a numpy array or a PIL image")


class Detector:
    """A loaded model or ensemble. ``classes``: its class names; ``path``: where it came from."""

    def __init__(self, predictor, device="cpu", cache_dir: str | None = None, workers: int = 1):
        self.predictor, self.device, self.cache_dir, self.workers = predictor, device, cache_dir, workers
        self.classes = list(predictor.classes)
        self.path = predictor.path
        self._runners = {}

    def runner(self, proposals: str = "paper", progress: bool = False):
        """The DetectionRunner of one proposal path (made once)."""
        from .runner import DetectionRunner, proposals_for
        if proposals not in PROPOSAL_PATHS:
            raise UserError(f"proposals={proposals!r}: choose from {', '.join(PROPOSAL_PATHS)}")
        if proposals not in self._runners:
            source = proposals_for(self.predictor, PROPOSAL_PATHS[proposals], self.device, self.cache_dir,
                                   use_cache=self.cache_dir is not None, workers=self.workers, progress=progress)
            self._runners[proposals] = DetectionRunner(self.predictor, source, self.device, progress=progress)
        return self._runners[proposals]

    def predict(self, image, proposals: str = "paper", threshold: float = 0.0) -> ImageDetections:
        """Detections in one image, best first, scoring at least ``threshold`` (the
        model's ``test.score_threshold`` already applies; mAP wants everything)."""
        array, image_id = as_rgb_array(image)
        found = next(iter(self.runner(proposals).detect(array, image_id).values()))
        return found.above(threshold) if threshold > 0 else found

    def predict_many(self, images: Iterable, proposals: str = "paper", threshold: float = 0.0,
                     progress: bool = False) -> Iterator[ImageDetections]:
        """``predict`` over many images, lazily, in order."""
        from tqdm import tqdm
        images = list(images) if progress else images
        for image in tqdm(images, desc="detect", unit="img", disable=not progress):
            yield self.predict(image, proposals, threshold)


def load_detector(path: str | None = None, device: str = "cpu", vote: str | None = None,
                  cache_dir: str | None = None, workers: int = 1) -> Detector:
    """A model or ensemble directory (default: the bundled BCCD model), ready to predict.
    ``vote``: an ensemble's rule (soft | hard; default: the ensemble's own);
    ``cache_dir``: keep proposals there (default: computed fresh); ``workers``:
    selective-search processes when a dataset's cache is filled."""
    from ensemble import load_predictor
    from networks.engine import resolve_device
    device = resolve_device(device) if isinstance(device, str) else device
    return Detector(load_predictor(path or default_model_dir(), device, vote), device, cache_dir, workers)
