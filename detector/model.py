"""A trained detector: load a model directory, score regions, turn scores into boxes.

Detection is split in two so that an ensemble can combine members in between:
``score_regions`` (one network: class probabilities and box deltas for every proposal)
and ``postprocess`` (decode boxes, threshold, per-class NMS, cap).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

from core.boxes import clip_boxes, decode
from core.config import load_config
from core.errors import UserError
from core.modeldir import check_fingerprint
from detector.region_classifier import RegionClassifier
from networks.engine import load_checkpoint
from networks.transforms import for_inference

from .heads import BBOX_WEIGHTS, apply_linear

MODEL_FILES = ("config.yaml", "model.pt", "heads.npz")


@dataclass
class RegionScores:
    probs: torch.Tensor       # (R, C+1): background first
    deltas: torch.Tensor      # (R, C, 4): class-specific box deltas (BBOX_WEIGHTS scaled)


def read_heads(path: str, num_classes: int, feature_dim: int) -> dict:
    """heads.npz, checked: ``bbox_W (C, D, 4)``, ``bbox_b (C, 4)``, ``svm_W (C, D, 1)``,
    ``svm_b (C, 1)`` for this model's C classes and D-dim features."""
    try:
        with np.load(path) as z:
            heads = {k: z[k] for k in z.files}
    except Exception as exc:            # truncated, not an archive, a pickle: one message
        raise UserError(f"{path}: cannot read ({type(exc).__name__}: {str(exc)[:200]})") from None
    expected = {"bbox_W": (num_classes, feature_dim, 4), "bbox_b": (num_classes, 4),
                "svm_W": (num_classes, feature_dim, 1), "svm_b": (num_classes, 1)}
    for name, array in heads.items():
        if name in expected and array.shape != expected[name]:
            raise UserError(f"{path}: {name} has shape {array.shape}, this model needs {expected[name]}")
    return heads


class DetectorModel:
    def __init__(self, cfg, net: RegionClassifier, heads: dict, model_dir: str = "", device="cpu"):
        self.cfg, self.net, self.heads, self.dir = cfg, for_inference(net, device), heads, model_dir
        self.device = torch.device(device)
        self.classes = list(cfg.data.classes)

    @classmethod
    def load(cls, model_dir: str, device="cpu") -> "DetectorModel":
        missing = [f for f in MODEL_FILES if not os.path.exists(os.path.join(model_dir, f))]
        if missing:
            raise UserError(f"{model_dir}: not a model directory (missing {', '.join(missing)})")
        cfg = load_config(os.path.join(model_dir, "config.yaml"))
        check_fingerprint(model_dir, cfg)
        test_model_cfg = dataclasses.replace(cfg.model, init="random", aux_classifiers=False)
        net = RegionClassifier(test_model_cfg, len(cfg.data.classes))
        state = load_checkpoint(os.path.join(model_dir, "model.pt"))
        try:
            net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        except (RuntimeError, AttributeError) as exc:
            raise UserError(f"{model_dir}/model.pt does not fit its config.yaml ({str(exc)[:200]})") from None
        heads = read_heads(os.path.join(model_dir, "heads.npz"), len(cfg.data.classes), net.feature_dim)
        return cls(cfg, net, heads, model_dir, device)

    @property
    def multibox_dir(self) -> str | None:
        name = self.cfg.proposals.multibox_model
        return os.path.join(self.dir, name) if name else None

    def manifest(self) -> dict:
        path = os.path.join(self.dir, "manifest.json")
        if not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable manifest ({exc})") from None

    @torch.no_grad()
    def score_regions(self, image: torch.Tensor, boxes: torch.Tensor) -> RegionScores:
        """image: normalized (3, H, W) on self.device; boxes (R, 4) in its pixels.
        With ``test.flip_vote`` the mirrored image scores the mirrored boxes too and the
        two are averaged, like a second ensemble member that costs no training; with
        ``test.scales`` (shared mode) each scale scores them and the scales are averaged."""
        scores = self._score_once(image, boxes)
        if not self.cfg.test.flip_vote:
            return scores
        width = image.shape[-1]
        mirrored = self._score_once(image.flip(-1), torch.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1))
        mirrored.deltas[..., 0] *= -1          # a shift to the right in the mirror is one to the left
        return RegionScores((scores.probs + mirrored.probs) / 2, (scores.deltas + mirrored.deltas) / 2)

    def _score_once(self, image: torch.Tensor, boxes: torch.Tensor) -> RegionScores:
        scales = self.cfg.test.scales if self.cfg.model.region_mode == "shared" else []
        if len(scales) < 2:
            return self._score_at(image, boxes, scales[0] if scales else None)
        # deltas are relative to each box's size, so the scales' deltas average like their probabilities
        each = [self._score_at(image, boxes, s) for s in scales]
        return RegionScores(sum(e.probs for e in each) / len(each), sum(e.deltas for e in each) / len(each))

    def _score_at(self, image: torch.Tensor, boxes: torch.Tensor, short_side: int | None) -> RegionScores:
        feats, logits, joint_deltas, _ = self.net.regions(image, boxes, self.cfg.test.batch_regions, short_side)
        probs = torch.softmax(logits, 1)
        if "svm_W" in self.heads:
            # R-CNN scores regions with the SVMs; squash to (0, 1) so members can average.
            fg = torch.sigmoid(apply_linear(feats, self.heads["svm_W"], self.heads["svm_b"])[:, :, 0])
            probs = torch.cat([1 - fg.max(1, keepdim=True).values, fg], 1)
        if joint_deltas is not None and self.cfg.train.bbox_regression:
            deltas = joint_deltas
        elif "bbox_W" in self.heads:
            deltas = apply_linear(feats, self.heads["bbox_W"], self.heads["bbox_b"])
        else:
            deltas = torch.zeros(len(boxes), len(self.classes), 4, device=image.device)
        return RegionScores(probs, deltas)


def regress_boxes(proposals: torch.Tensor, deltas: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Class-specific boxes (R, C, 4): each proposal moved by its class's deltas, clipped."""
    r, c = deltas.shape[:2]
    boxes = decode(proposals[:, None, :].expand(r, c, 4), deltas, BBOX_WEIGHTS)
    return clip_boxes(boxes.reshape(-1, 4), width, height).reshape(r, c, 4)


def refine_boxes(proposals: torch.Tensor, scores: RegionScores, score_fn, passes: int, height: int, width: int):
    """Iterative localization (Gidaris & Komodakis, ICCV 2015): ``passes`` more rounds in which
    every region moves to the box its best foreground class regresses it to and ``score_fn``
    (boxes (R, 4) -> RegionScores, the same network or ensemble) scores it there again. A
    box is scored where it ends up, not where it started, so a proposal that covered half a
    cell is judged on the whole cell. Returns every round's class-specific boxes and the
    probabilities computed for them, stacked: boxes (R * (1 + passes), C, 4), probs
    (R * (1 + passes), C+1), for select_detections to pick from (NMS across the rounds)."""
    start = proposals
    boxes, probs = [regress_boxes(start, scores.deltas, height, width)], [scores.probs]
    for _ in range(passes):
        best = probs[-1][:, 1:].argmax(1)
        moved = boxes[-1][torch.arange(len(start), device=start.device), best]        # (R, 4)
        flat = (moved[:, 2] <= moved[:, 0]) | (moved[:, 3] <= moved[:, 1])           # clipped to nothing: stay
        start = torch.where(flat[:, None], start, moved)
        again = score_fn(start)
        boxes.append(regress_boxes(start, again.deltas, height, width))
        probs.append(again.probs)
    return torch.cat(boxes), torch.cat(probs)


def select_detections(boxes: torch.Tensor, probs: torch.Tensor, test_cfg):
    """Score threshold, per-class NMS (torchvision batched_nms, or Soft-NMS), per-image cap.
    boxes (R, C, 4), probs (R, C+1) -> numpy (boxes (N, 4), scores (N,), labels (N,)), best first."""
    r, c = boxes.shape[:2]
    flat_boxes = boxes.reshape(-1, 4)
    scores = probs[:, 1:].reshape(-1)
    labels = torch.arange(c, device=boxes.device).repeat(r)
    keep = (scores > test_cfg.score_threshold) & (flat_boxes[:, 2] > flat_boxes[:, 0]) & \
        (flat_boxes[:, 3] > flat_boxes[:, 1])
    flat_boxes, scores, labels = flat_boxes[keep], scores[keep], labels[keep]
    if test_cfg.soft_nms > 0:
        keep, kept_scores = soft_nms(flat_boxes, scores, labels, test_cfg.soft_nms, test_cfg.score_threshold,
                                     test_cfg.max_per_image)
    else:
        keep = batched_nms(flat_boxes, scores, labels, test_cfg.nms_iou)[:test_cfg.max_per_image]
        kept_scores = scores[keep]
    kept_boxes = flat_boxes[keep]
    if test_cfg.box_vote > 0:
        kept_boxes = vote_boxes(kept_boxes, labels[keep], flat_boxes, scores, labels, test_cfg.box_vote)
    return (kept_boxes.cpu().numpy().astype(np.float32), kept_scores.cpu().numpy().astype(np.float32),
            labels[keep].cpu().numpy().astype(np.int64))


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, sigma: float, min_score: float,
             max_keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian Soft-NMS (Bodla et al., ICCV 2017), per class: the best box is kept and every
    other box of its class has its score multiplied by exp(-IoU^2 / sigma), instead of being
    removed when IoU > a threshold; repeat. Among crowded objects (BCCD's red cells) a true
    neighbour keeps a lower score rather than none.

    boxes (N, 4), scores (N,), labels (N,) -> (indices into N, their decayed scores), best
    first, at most ``max_keep``, none below ``min_score``."""
    picked, picked_scores = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().squeeze(1)
        left = scores[idx].clone()
        iou = box_iou(boxes[idx], boxes[idx])
        for _ in range(min(max_keep, len(idx))):    # the image keeps max_keep at most, so no class needs more
            best = int(left.argmax())
            if left[best] < min_score:
                break
            picked.append(idx[best])
            picked_scores.append(left[best].clone())
            left = left * torch.exp(-iou[best] ** 2 / sigma)
            left[best] = -1.0                        # taken
    if not picked:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), scores[:0]
    picked, picked_scores = torch.stack(picked), torch.stack(picked_scores)
    order = picked_scores.argsort(descending=True)[:max_keep]
    return picked[order], picked_scores[order]


def vote_boxes(kept: torch.Tensor, kept_labels: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor,
               labels: torch.Tensor, iou: float) -> torch.Tensor:
    """Box voting (Gidaris & Komodakis, ICCV 2015): each kept box (K, 4) is replaced by the
    score-weighted mean of the candidate boxes (N, 4) of its class that overlap it by at least
    ``iou``, NMS's losers included. The kept scores stay; a box the classifier liked for a
    part of the object is pulled towards the many boxes around the whole of it."""
    if len(kept) == 0:
        return kept
    weights = (box_iou(kept, boxes) >= iou) & (kept_labels[:, None] == labels[None, :])
    weights = weights * scores[None, :]            # (K, N); each kept box overlaps itself
    return (weights @ boxes) / weights.sum(1, keepdim=True)
