"""Proposal quality: recall at IoU 0.5 / 0.7, ABO, boxes and seconds per image."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.boxes import pairwise_iou

RECALL_AT = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000)


@dataclass
class ProposalReport:
    method: str
    num_images: int
    num_gt: int
    recall_50: float
    recall_70: float
    abo: float                          # average best overlap: mean over gt of max IoU
    boxes_per_image: float
    seconds_per_image: float
    curve: dict = field(default_factory=dict)   # {N: (recall@0.5, recall@0.7)} with top-N boxes
    per_class: dict = field(default_factory=dict)  # {class: recall@0.5}, when labels are given

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["curve"] = {str(n): list(v) for n, v in self.curve.items()}
        return d

    def format(self) -> str:
        return (f"{self.method}: {self.num_images} images, {self.num_gt} objects\n"
                f"  recall@0.5  {self.recall_50:.4f}\n  recall@0.7  {self.recall_70:.4f}\n"
                f"  ABO         {self.abo:.4f}\n  boxes/image {self.boxes_per_image:.1f}\n"
                f"  s/image     {self.seconds_per_image:.3f}"
                + "".join(f"\n  recall@0.5 {name}: {r:.4f}" for name, r in self.per_class.items()))


def best_overlaps(gt_boxes: np.ndarray, proposals: np.ndarray) -> np.ndarray:
    """``(P, G)``: for each gt, the best IoU among the first n proposals, at row n-1."""
    if len(proposals) == 0:
        return np.zeros((1, len(gt_boxes)))
    return np.maximum.accumulate(pairwise_iou(proposals.astype(np.float64), gt_boxes), axis=0)


def proposal_report(method: str, gt_per_image: list[np.ndarray], proposals_per_image: list[np.ndarray],
                    seconds: list[float], labels_per_image: list[np.ndarray] | None = None,
                    class_names=None) -> ProposalReport:
    finals, at_n, labels = [], {n: [] for n in RECALL_AT}, []
    for k, (gt, props) in enumerate(zip(gt_per_image, proposals_per_image)):
        if len(gt) == 0:
            continue
        cum = best_overlaps(gt, props)
        finals.append(cum[-1])
        if labels_per_image is not None:
            labels.append(labels_per_image[k])
        for n in RECALL_AT:
            at_n[n].append(cum[min(n, len(cum)) - 1])
    best = np.concatenate(finals) if finals else np.zeros(0)
    curve = {n: (float((np.concatenate(v) >= 0.5).mean()), float((np.concatenate(v) >= 0.7).mean()))
             for n, v in at_n.items() if v}
    per_class = {}
    if labels and class_names is not None:
        found, labels = best >= 0.5, np.concatenate(labels)
        per_class = {name: float(found[labels == c].mean()) for c, name in enumerate(class_names)
                     if (labels == c).any()}
    max_boxes = max((len(p) for p in proposals_per_image), default=0)
    curve = {n: v for n, v in curve.items() if n <= max(max_boxes, 1) or n == RECALL_AT[0]}
    return ProposalReport(
        method=method, num_images=len(proposals_per_image), num_gt=len(best),
        recall_50=float((best >= 0.5).mean()) if len(best) else 0.0,
        recall_70=float((best >= 0.7).mean()) if len(best) else 0.0,
        abo=float(best.mean()) if len(best) else 0.0,
        boxes_per_image=float(np.mean([len(p) for p in proposals_per_image])) if proposals_per_image else 0.0,
        seconds_per_image=float(np.mean(seconds)) if seconds else 0.0, curve=curve, per_class=per_class)


def plot_recall(reports: list[ProposalReport], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.fileio import atomic_write
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in reports:
        ns = sorted(r.curve)
        ax.plot(ns, [r.curve[n][0] for n in ns], marker="o", label=f"{r.method} IoU 0.5")
        ax.plot(ns, [r.curve[n][1] for n in ns], marker=".", ls="--", label=f"{r.method} IoU 0.7")
    ax.set(xscale="log", xlabel="proposals per image (top N)", ylabel="recall", ylim=(0, 1.02),
           title="proposal recall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
