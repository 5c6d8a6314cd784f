"""Printing and plotting evaluation results."""
from __future__ import annotations

import os
import re

METRIC_TITLES = {
    "ilsvrc": "ILSVRC DET AP (eval_detection.m: per-object IoU threshold, +1 px)",
    "voc07": "VOC2007 11-point AP @ IoU 0.5 (VOCevaldet)",
    "voc": "VOC2010+ area AP @ IoU 0.5 (VOCevaldet)",
    "coco": "COCO AP @ IoU [.50:.95] (pycocotools COCOeval)",
}


def format_table(results: dict, dataset) -> str:
    """One table: a row per class, a column per result (e.g. each ensemble member)."""
    names = list(results)
    first = results[names[0]]
    width = max([len("class")] + [len(dataset.display_name(c)) for c in dataset.classes])
    col = max(8, *(len(n) for n in names))
    lines = [METRIC_TITLES.get(first.metric, first.metric),
             f"{'class':<{width}}  {'#gt':>6}  " + "  ".join(f"{n:>{col}}" for n in names)]
    lines.append("-" * len(lines[-1]))
    for c in dataset.classes:
        cells = []
        for n in names:
            ap = results[n].per_class[c]
            cells.append(f"{'-' if ap is None else f'{ap:.4f}':>{col}}")
        lines.append(f"{dataset.display_name(c):<{width}}  {first.num_positives.get(c, 0):>6}  "
                     + "  ".join(cells))
    lines.append("-" * len(lines[1]))
    lines.append(f"{'mAP':<{width}}  {'':>6}  " + "  ".join(f"{results[n].mAP:>{col}.4f}" for n in names))
    for key in first.stats:
        if key != "AP":            # COCOeval's -1 means "no objects of that size": shown as -
            lines.append(f"{key:<{width}}  {'':>6}  "
                         + "  ".join(f"{_stat(results[n].stats[key]):>{col}}" for n in names))
    lines.append(f"{first.num_images} images, {first.num_detections} detections scored")
    return "\n".join(lines)


def _stat(value: float) -> str:
    return "-" if value is None or value < 0 else f"{value:.4f}"


def class_breakdown(result, dets) -> list[dict]:
    """Where AP goes, per class with ground truth: the recall reached at all (what the
    proposals, the score threshold and NMS left), the recall while precision is still
    >= 0.5, and the highest score the class gets. A low top score marks a class the
    classifier is unsure of; a low final recall points at proposals or NMS."""
    rows = []
    for name, (recall, precision) in result.curves.items():
        ok = precision >= 0.5
        scores = dets.scores[dets.labels == name]
        rows.append({"class": name, "num_gt": result.num_positives[name], "ap": result.per_class[name],
                     "final_recall": float(recall[-1]) if len(recall) else 0.0,
                     "recall_at_precision_0.5": float(recall[ok].max()) if ok.any() else 0.0,
                     "top_score": float(scores.max()) if len(scores) else 0.0})
    return rows


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_pr_plots(result, dataset, out_dir: str) -> list[str]:
    """``pr_curves.png`` (every class) and ``pr_<class>.png`` per class. Returns paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.fileio import atomic_write

    os.makedirs(out_dir, exist_ok=True)
    written = []

    def save(fig, name):
        path = os.path.join(out_dir, name)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
        written.append(path)

    def style(ax, title):
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
        ax.grid(alpha=0.3)

    fig, ax = plt.subplots(figsize=(7, 6))
    for c, (rec, prec) in result.curves.items():
        ap = result.per_class[c]
        ax.plot(rec, prec, label=f"{dataset.display_name(c)} ({ap:.3f})", lw=1.2)
    style(ax, f"{result.metric}: mAP {result.mAP:.4f}")
    if 0 < len(result.curves) <= 20:
        ax.legend(loc="lower left", fontsize=8)
    save(fig, "pr_curves.png")
    for c, (rec, prec) in result.curves.items():
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.plot(rec, prec, lw=1.5)
        style(ax, f"{dataset.display_name(c)}: AP {result.per_class[c]:.4f} ({result.metric})")
        save(fig, f"pr_{_safe(c)}.png")
    return written
