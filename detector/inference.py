"""Running a model or an ensemble over images: proposals once, every member scores the
same regions, then box regression and NMS. Used by detect.py and evaluate.py --model."""
from __future__ import annotations

import logging
import time
from collections import defaultdict

import numpy as np
import torch

from .model import regress_boxes, select_detections
from .region_classifier import to_tensor
from .structures import Detections

log = logging.getLogger(__name__)
STAGES = ("decode", "proposals", "network", "regression", "nms")


class DetectionRunner:
    """``predictor``: an ensemble.Ensemble (a single model is an ensemble of one)."""

    def __init__(self, predictor, cache_dir=None, device="cpu", workers=2, proposal_method=None,
                 regress: bool = True, progress: bool = True):
        import copy

        from proposals.cache import ProposalSource
        self.predictor, self.device, self.regress, self.progress = predictor, torch.device(device), regress, progress
        self.cfg = predictor.cfg
        proposal_cfg = copy.deepcopy(self.cfg.proposals)
        if proposal_method:
            proposal_cfg.method = proposal_method
        self.source = ProposalSource(proposal_cfg, cache_dir, predictor.multibox_dir, device, workers, progress)
        self.timings = defaultdict(float)
        self.images_done = 0

    def _select(self, proposals, scores, height, width):
        t = time.perf_counter()
        if self.regress:
            boxes = regress_boxes(proposals, scores.deltas, height, width)
        else:
            boxes = proposals[:, None, :].expand(len(proposals), len(self.predictor.classes), 4)
        t2 = time.perf_counter()
        out = select_detections(boxes, scores.probs, self.cfg.test)
        self.timings["regression"] += t2 - t
        self.timings["nms"] += time.perf_counter() - t2
        return out

    @torch.no_grad()
    def detect(self, image_rgb: np.ndarray, image_path: str, members: bool = False) -> dict:
        """{name: (boxes, scores, labels)}: "ensemble" (or the model's name) and, with
        ``members``, each member of an ensemble on its own."""
        height, width = image_rgb.shape[:2]
        t = time.perf_counter()
        boxes_np, _ = self.source.get(image_path, image_rgb)
        self.timings["proposals"] += time.perf_counter() - t
        t = time.perf_counter()
        proposals = torch.from_numpy(np.asarray(boxes_np, np.float32)).to(self.device)
        image = to_tensor(image_rgb, self.device)
        per_member = [m.score_regions(image, proposals) for m in self.predictor.members]
        combined = self.predictor.combine(per_member)
        self.timings["network"] += time.perf_counter() - t
        results = {}
        if len(per_member) > 1:
            results["ensemble"] = self._select(proposals, combined, height, width)
            if members:
                for name, scores in zip(self.predictor.names, per_member):
                    results[name] = self._select(proposals, scores, height, width)
        else:
            results[self.predictor.names[0]] = self._select(proposals, combined, height, width)
        self.images_done += 1
        return results

    def detect_dataset(self, dataset, members: bool = False) -> dict[str, Detections]:
        """Detections of every image of a dataset split, per result name. Under torchrun
        each rank detects its shard of the images and every rank returns all of them,
        in the split's order (so the scores match a single process exactly)."""
        from tqdm import tqdm

        from . import distributed
        from .images import read_image
        self.source.prepare([r.path for r in dataset.images])
        per_image = []
        for rec in tqdm(distributed.shard(dataset.images), desc="detect", unit="img",
                        disable=not self.progress or not distributed.is_main()):
            t = time.perf_counter()
            image = read_image(rec.path)
            self.timings["decode"] += time.perf_counter() - t
            found = {}
            for name, (boxes, scores, labels) in self.detect(image, rec.path, members).items():
                found[name] = Detections(np.full(len(scores), rec.image_id), np.array(self.predictor.classes)[labels]
                                         if len(labels) else np.zeros(0, str), scores.astype(np.float64),
                                         boxes.astype(np.float64))
            per_image.append(found)
        if distributed.active():
            gathered = distributed.gather((per_image, dict(self.timings), self.images_done))
            per_image = distributed.unshard([g[0] for g in gathered])
            self.timings = defaultdict(float, {k: sum(g[1].get(k, 0.0) for g in gathered) for k in STAGES})
            self.images_done = sum(g[2] for g in gathered)
        parts = defaultdict(list)
        for found in per_image:
            for name, dets in found.items():
                parts[name].append(dets)
        return {name: Detections.concatenate(p) for name, p in parts.items()}

    def timing_report(self) -> dict:
        n = max(self.images_done, 1)
        return {stage: self.timings[stage] / n for stage in STAGES if stage in self.timings}
