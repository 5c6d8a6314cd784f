"""``evaluate.py --report DIR``: one self-contained page a person can read.

DIR/index.html (inline CSS, no script, no server) with the metric and mAP, the per-class
table (every ensemble member's AP beside the ensemble's), the precision-recall curves,
the confusion matrix and the false-positive breakdown (eval/analysis.py), and a gallery
of the images with the most false positives and misses: ground truth in green,
detections in red with their scores. Images are files beside index.html.
"""
from __future__ import annotations

import html
import os

import numpy as np

from core.fileio import atomic_write

from .analysis import FP_KINDS
from .report import class_breakdown, save_pr_plots

GALLERY_SIZE = 6
CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}.diag{background:#dff0d8}.off{background:#fbe3e3}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;max-width:340px}
.gallery img{max-width:340px;border:1px solid #ccc}figcaption{font-size:.85em}.note{color:#666;font-size:.9em}
"""


def _table(header: list[str], rows: list[list], cls=None) -> str:
    out = ["<table><tr>" + "".join(f"<th class='name'>{html.escape(str(header[0]))}</th>" if i == 0 else
                                   f"<th>{html.escape(str(h))}</th>" for i, h in enumerate(header)) + "</tr>"]
    for r, row in enumerate(rows):
        cells = []
        for i, v in enumerate(row):
            css = "name" if i == 0 else (cls(r, i) if cls else "")
            cells.append(f"<td class='{css}'>{html.escape(str(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _draw(rec, dets, score_threshold: float, path: str) -> None:
    from PIL import Image, ImageDraw

    from core.images import read_image
    im = Image.fromarray(read_image(rec.path))
    draw = ImageDraw.Draw(im)
    line = max(1, round(max(im.size) / 400))
    for box in rec.boxes:
        draw.rectangle([float(v) for v in box], outline=(40, 200, 60), width=line)
    mine = (dets.image_ids == rec.image_id) & (dets.scores >= score_threshold)
    for box, label, score in zip(dets.boxes[mine], dets.labels[mine], dets.scores[mine]):
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=(220, 30, 30), width=line)
        draw.text((x1 + 2, y1 + 1), f"{label} {score:.2f}", fill=(220, 30, 30))
    with atomic_write(path, "wb") as f:
        im.save(f, format="JPEG", quality=88)


def write_report(out_dir: str, results: dict, dataset, dets, analysis: dict, title: str = "") -> str:
    """Write DIR/index.html (and its images); returns its path. ``results``: {name:
    EvalResult}, the main result first (an ensemble's members after it)."""
    os.makedirs(out_dir, exist_ok=True)
    names = list(results)
    main = results[names[0]]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title or 'evaluation')}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title or 'Evaluation')}</h1>",
             f"<p id='summary'>metric <b>{main.metric}</b>, mAP <b id='map'>{main.mAP:.4f}</b> on "
             f"{main.num_images} images ({html.escape(dataset.split)} of {html.escape(str(dataset.root))}), "
             f"{main.num_detections} detections scored.</p>"]
    breakdown = {r["class"]: r for r in class_breakdown(main, dets)} if main.curves else {}
    extra = ["final recall", "recall at precision >= 0.5", "top score"] if breakdown else []
    header = ["class", "#gt"] + names + extra
    rows = []
    for c in dataset.classes:
        row = [dataset.display_name(c), main.num_positives.get(c, 0)] + [_fmt(results[n].per_class[c]) for n in names]
        if breakdown:
            b = breakdown.get(c)
            row += [f"{b['final_recall']:.3f}", f"{b['recall_at_precision_0.5']:.3f}", f"{b['top_score']:.3f}"] \
                if b else ["-"] * 3
        rows.append(row)
    rows.append(["mAP", ""] + [f"{results[n].mAP:.4f}" for n in names] + [""] * len(extra))
    parts += ["<h2>Average precision per class</h2>",
              "<p class='note'>Final recall: what the proposals, the score threshold and NMS left at all; recall "
              "while precision is still >= 0.5; the highest score the class gets (a low one marks a class the "
              "classifier is unsure of).</p>" if extra else "", _table(header, rows)]

    if main.curves:
        save_pr_plots(main, dataset, out_dir)
        parts += ["<h2>Precision-recall curves</h2>", "<img id='pr' src='pr_curves.png' alt='precision-recall curves'>"]

    thr, iou = analysis["score_threshold"], analysis["iou"]
    conf = analysis["confusion"]
    k = len(conf["classes"]) - 1
    crow = [[conf["classes"][i]] + conf["matrix"][i] for i in range(k + 1)]

    def conf_cls(r, i):
        return "diag" if r == i - 1 and r < k else ("off" if crow[r][i] else "")
    parts += [f"<h2>Confusion matrix</h2><p class='note'>Detections scoring at least {thr} matched to objects at "
              f"IoU >= {iou}. Rows: the object's class (background: a detection that covers no object); columns: "
              f"what it was detected as (background: an object no detection found).</p>",
              "<div id='confusion'>" + _table(["object \\ detected"] + conf["classes"], crow, conf_cls) + "</div>"]

    fp = analysis["false_positives"]
    fp_rows = [[c, fp[c]["true_positives"]] + [fp[c][kind] for kind in FP_KINDS] +
               ["-" if fp[c]["background_at_border"] is None else f"{100 * fp[c]['background_at_border']:.0f}%"]
               for c in dataset.classes]
    parts += [f"<h2>False positives</h2><p class='note'>Detections scoring at least {thr} that are not correct, "
              f"after Hoiem et al. 2012: duplicate (IoU >= {iou} with an object of the class already found), "
              f"mislocalized (0.1 <= IoU < {iou}), other class (IoU >= 0.1 with an object of another class), "
              f"background (the rest); and the share of background ones touching the image border.</p>",
              "<div id='false-positives'>" + _table(["class", "correct"] + list(FP_KINDS) + ["background at border"],
                                                    fp_rows) + "</div>"]

    worst = sorted(analysis["per_image"], key=lambda r: (-(r["false_positives"] + r["missed"]), r["image"]))
    worst = [w for w in worst if w["false_positives"] + w["missed"] > 0][:GALLERY_SIZE]
    by_id = {r.image_id: r for r in dataset.images}
    figures = []
    for w in worst:
        name = f"worst_{len(figures):02d}.jpg"
        _draw(by_id[w["image"]], dets, thr, os.path.join(out_dir, name))
        figures.append(f"<figure><img src='{name}' alt='{html.escape(w['image'])}'><figcaption>"
                       f"{html.escape(w['image'])}: {w['false_positives']} false positive(s), {w['missed']} missed"
                       f"</figcaption></figure>")
    parts += ["<h2>Worst images</h2><p class='note'>Ground truth green, detections red (score at least "
              f"{thr}).</p>", "<div class='gallery' id='gallery'>" + "".join(figures) + "</div>", "</body></html>"]
    path = os.path.join(out_dir, "index.html")
    with atomic_write(path) as f:
        f.write("\n".join(parts))
    return path


def gallery_size(analysis: dict) -> int:
    return min(GALLERY_SIZE, int(np.sum([r["false_positives"] + r["missed"] > 0 for r in analysis["per_image"]])))
