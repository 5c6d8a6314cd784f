"""Running a model or an ensemble over images (the GoogLeNet detection recipe at test
time): proposals once per image, every member scores the same regions, the members'
votes are combined, boxes are regressed with the class-specific deltas (and, with
``test.refine``, scored again where they moved to), then per-class NMS. Used by the
Python API (api.py), detect.py and evaluate.py --model."""
from __future__ import annotations

import copy
import functools
import logging
import time
from collections import defaultdict

import numpy as np
import torch

from core.structures import Detections, ImageDetections
from detector.model import refine_boxes, regress_boxes, select_detections
from networks.transforms import to_tensor
from proposals.cache import proposal_source

log = logging.getLogger(__name__)
TIMED_STAGES = ("decode", "proposals", "network", "regression", "nms", "objectness")


def proposals_for(predictor, method: str | None = None, device="cpu", cache_dir: str | None = None,
                  use_cache: bool = True, workers: int = 2, progress: bool = True):
    """The proposal source a predictor's recipe asks for (``method`` overrides it:
    ``multibox`` is the fast path), behind the cache when ``use_cache``."""
    cfg = copy.deepcopy(predictor.cfg.proposals)
    if method:
        cfg.method = method
    return proposal_source(cfg, predictor.multibox_dir, device, cache_dir, use_cache, workers, progress)


class DetectionRunner:
    """``predictor``: an ensemble.Ensemble (a single model is an ensemble of one);
    ``proposals``: what ``proposals_for`` returns (anything with ``propose(image_rgb)``
    and ``prepare(paths)``)."""

    def __init__(self, predictor, proposals, device="cpu", progress: bool = True):
        self.predictor, self.proposals = predictor, proposals
        self.device, self.progress = torch.device(device), progress
        self.cfg = predictor.cfg
        self.timings = defaultdict(float)
        self.images_done = 0
        self.objectness = None
        if self.cfg.test.objectness > 0 and predictor.objectness_multiboxes:      # (no MultiBox: nothing to ask)
            from proposals.objectness import ObjectnessScorer
            self.objectness = ObjectnessScorer(predictor.objectness_multiboxes, self.cfg.test.objectness_iou, device,
                                              predictor.classes)

    def _with_objectness(self, predictions, found: ImageDetections) -> ImageDetections:
        """``test.objectness``: each score blended with its box's MultiBox objectness, best first again."""
        from proposals.objectness import fuse_objectness
        objectness = self.objectness.score(predictions, found.boxes, found.labels)
        scores = fuse_objectness(found.scores, objectness, self.cfg.test.objectness)
        order = np.argsort(-scores, kind="stable")
        return ImageDetections(found.boxes[order], scores[order], found.labels[order], found.class_names,
                               found.image_id)

    def _select(self, proposals: torch.Tensor, scores, score_fn, height: int, width: int,
                image_id: str) -> ImageDetections:
        """Boxes from the scores; ``score_fn`` (boxes -> RegionScores, the scorer that made
        ``scores``) scores the regressed boxes again when ``test.refine`` asks for it."""
        t = time.perf_counter()
        if self.cfg.test.refine:
            boxes, probs = refine_boxes(proposals, scores, score_fn, self.cfg.test.refine, height, width)
            self.timings["network"] += time.perf_counter() - t     # (mostly the extra passes)
        else:
            boxes, probs = regress_boxes(proposals, scores.deltas, height, width), scores.probs
            self.timings["regression"] += time.perf_counter() - t
        t = time.perf_counter()
        boxes, kept_scores, labels = select_detections(boxes, probs, self.cfg.test)
        self.timings["nms"] += time.perf_counter() - t
        return ImageDetections(boxes, kept_scores, labels, self.predictor.classes, image_id)

    @torch.no_grad()
    def detect(self, image_rgb: np.ndarray, image_id: str = "", members: bool = False) -> dict[str, ImageDetections]:
        """``image_rgb`` uint8 (H, W, 3) -> {name: detections}: "ensemble" (or the model's
        name) first and, with ``members``, each member of an ensemble on its own."""
        height, width = image_rgb.shape[:2]
        t = time.perf_counter()
        boxes_np, _ = self.proposals.propose(image_rgb)
        self.timings["proposals"] += time.perf_counter() - t
        t = time.perf_counter()
        proposals = torch.from_numpy(np.asarray(boxes_np, np.float32)).to(self.device)
        image = to_tensor(image_rgb, self.device)
        nets = self.predictor.members
        per_member = [m.score_regions(image, proposals) for m in nets]
        combined = self.predictor.combine(per_member)
        self.timings["network"] += time.perf_counter() - t
        main = "ensemble" if len(per_member) > 1 else self.predictor.names[0]

        def vote(boxes):
            return self.predictor.combine([m.score_regions(image, boxes) for m in nets])
        results = {main: self._select(proposals, combined, vote, height, width, image_id)}
        if members and len(per_member) > 1:
            for name, member, scores in zip(self.predictor.names, nets, per_member):
                results[name] = self._select(proposals, scores, functools.partial(member.score_regions, image),
                                             height, width, image_id)
        if self.objectness is not None:
            t = time.perf_counter()
            predictions = self.objectness.predict(image_rgb)
            results = {name: self._with_objectness(predictions, found) for name, found in results.items()}
            self.timings["objectness"] += time.perf_counter() - t
        self.images_done += 1
        return results

    def detect_dataset(self, dataset, members: bool = False) -> dict[str, Detections]:
        """Detections of every image of a dataset split, per result name. Under torchrun
        each rank detects its shard of the images and every rank returns all of them,
        in the split's order (so the scores match a single process exactly)."""
        from tqdm import tqdm

        from core import distributed
        from core.images import read_image
        self.proposals.prepare([r.path for r in dataset.images])
        per_image = []
        for rec in tqdm(distributed.shard(dataset.images), desc="detect", unit="img",
                        disable=not self.progress or not distributed.is_main()):
            t = time.perf_counter()
            image = read_image(rec.path)
            self.timings["decode"] += time.perf_counter() - t
            per_image.append({name: found.to_detections()
                              for name, found in self.detect(image, rec.image_id, members).items()})
        if distributed.active():
            gathered = distributed.gather((per_image, dict(self.timings), self.images_done))
            per_image = distributed.unshard([g[0] for g in gathered])
            self.timings = defaultdict(float, {k: sum(g[1].get(k, 0.0) for g in gathered) for k in TIMED_STAGES})
            self.images_done = sum(g[2] for g in gathered)
        parts = defaultdict(list)
        for found in per_image:
            for name, dets in found.items():
                parts[name].append(dets)
        return {name: Detections.concatenate(p) for name, p in parts.items()}

    def timing_report(self) -> dict:
        """Mean seconds per image of each stage run so far."""
        n = max(self.images_done, 1)
        return {stage: self.timings[stage] / n for stage in TIMED_STAGES if stage in self.timings}
