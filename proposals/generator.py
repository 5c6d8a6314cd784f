"""Proposals for an image held in memory: the recipe's method, no files involved.

``ss`` is selective search (proposals/selective_search.py), ``multibox`` the MultiBox
network's top-k boxes (proposals/multibox.py), ``combined`` the union of the two with
near-duplicates dropped (the GoogLeNet paper's 60/40 mix of both sources). The cache
(proposals/cache.py) wraps a generator with the same ``propose`` call.
"""
from __future__ import annotations

import os
import time

import numpy as np

from core.boxes import pairwise_iou
from core.errors import UserError

METHODS = ("ss", "multibox", "combined")


def union_proposals(ss_boxes: np.ndarray, mb_boxes: np.ndarray, duplicate_iou: float) -> np.ndarray:
    """MultiBox boxes first (scored, best first), then the selective-search boxes that no
    MultiBox box already covers at IoU >= duplicate_iou. (N, 4) float32."""
    if len(mb_boxes) and len(ss_boxes):
        covered = pairwise_iou(ss_boxes, mb_boxes).max(axis=1) >= duplicate_iou
        ss_boxes = ss_boxes[~covered]
    return np.vstack([mb_boxes.reshape(-1, 4), ss_boxes.reshape(-1, 4)]).astype(np.float32)


class ProposalGenerator:
    """``propose(image_rgb)`` -> (boxes (N, 4) float32 best first, seconds taken).

    ``proposal_cfg``: core.config.ProposalConfig; ``multibox_dir``: the trained MultiBox
    (needed by ``multibox`` and ``combined``), loaded once on first use."""

    def __init__(self, proposal_cfg, multibox_dir: str | None = None, device="cpu"):
        self.cfg, self.method, self.device = proposal_cfg, proposal_cfg.method, device
        if self.method not in METHODS:
            raise UserError(f"proposal method {self.method!r}: choose from {', '.join(METHODS)}")
        if self.uses("multibox") and not (multibox_dir and os.path.exists(os.path.join(multibox_dir, "multibox.pt"))):
            raise UserError(f"proposal method {self.method!r} needs a trained MultiBox model "
                            f"(looked for {multibox_dir or '<none>'}/multibox.pt)")
        self.multibox_dir = multibox_dir
        self._multibox = None

    def uses(self, source: str) -> bool:
        """Whether this method draws on ``ss`` or ``multibox``."""
        return self.method in (source, "combined")

    def multibox_net(self):
        if self._multibox is None:
            from .multibox import load_multibox
            self._multibox = load_multibox(self.multibox_dir, self.device)
        return self._multibox

    def selective_search(self, image_rgb: np.ndarray) -> np.ndarray:
        from .selective_search import selective_search
        return selective_search(np.ascontiguousarray(image_rgb[:, :, ::-1]), self.cfg.selective_search)

    def multibox(self, images_rgb: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(boxes, scores) per image, top k after NMS, one network batch."""
        from .multibox import multibox_proposals
        net, size = self.multibox_net()
        return multibox_proposals(net, size, images_rgb, self.cfg.multibox_top_k, self.device, self.cfg.multibox_nms)

    def propose(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        t = time.perf_counter()
        ss = self.selective_search(image_rgb) if self.uses("ss") else None
        mb = self.multibox([image_rgb])[0][0] if self.uses("multibox") else None
        boxes = union_proposals(ss, mb, self.cfg.duplicate_iou) if self.method == "combined" else (ss if mb is None else mb)
        return np.asarray(boxes, np.float32), time.perf_counter() - t

    def prepare(self, image_paths: list[str]) -> None:
        """Nothing to precompute without a cache (the cache's ``prepare`` fills it)."""
