#!/usr/bin/env python
"""Would rescoring detections from their box geometry pay? A probe on detections files.

    python bench/rescore_probe.py --dataset ../shared/datasets/bccd --split test \\
        --detections bench/results/ablation/bccd/combined_s0_thr_paper-detections.json \\
        [--objectness models/bccd/multibox [MORE_MULTIBOX_DIRS]] [--weights 0.25 0.5]

BCCD's annotators leave out red cells cut by the image border, and our classifier scores
them high (docs/ablation.md). A per-class logistic regression on the
detector's score logit plus the box's geometry (touches the border; width and height
against the class's median; their squares) could learn that convention. To see whether it
would without a held-out split, the images are cut in two seeded halves: the model fitted
on one half rescores the other, both ways, and the rescored file is scored as usual. No
network, numpy and scikit-learn only. Prints a markdown table per file.

With ``--objectness DIR ...`` a second signal joins: the objectness those MultiBoxes give
the box (the highest score of its predictions at IoU >= 0.5 with it, averaged over the
directories), exactly as ``test.objectness`` computes it after NMS, so a saved detections
file can be rescored without running the classifier again. MultiBox sees the whole image
and is trained on every prior, so an unannotated cell is a negative for it wherever it
lies, as for a Faster R-CNN's RPN; the classifier only sees sampled regions. Rows:
``score^(1-w) x objectness^w`` for each ``--weights`` w (nothing fitted), and the
cross-fitted regression on the two logits. ``--save-rescored DIR`` writes each rescored
file (w the first weight) as DIR/<name>. ``--held-out-by MODEL`` scores only the split's
images that the model (every member of an ensemble) held out for validation, never trained
on: how ``test.objectness`` was chosen on BCCD val (docs/ablation.md).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.errors import run_cli  # noqa: E402
from eval.analysis import touches_border  # noqa: E402  (the report's border rule)


def geometry_features(dataset, dets, label: np.ndarray, variant: str) -> np.ndarray:
    """(N, F) features of each detection: score logit, border contact, relative size."""
    size = {r.image_id: (r.width, r.height) for r in dataset.images}
    wh_img = np.array([size[str(i)] for i in dets.image_ids], float)
    b = dets.boxes
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    border = touches_border(b, wh_img[:, 0], wh_img[:, 1]).astype(float)
    z = logit(dets.scores)
    if variant == "border":
        return np.column_stack([z, border, border * z])
    med = np.ones((label.max() + 1, 2))
    for c in np.unique(label):
        sure = (label == c) & (dets.scores >= 0.5)
        if sure.any():
            med[c] = np.median(w[sure]), np.median(h[sure])
    lw, lh = np.log(np.maximum(w, 1) / med[label, 0]), np.log(np.maximum(h, 1) / med[label, 1])
    return np.column_stack([z, border, border * z, lw, lh, lw ** 2, lh ** 2, border * lw, border * lh])


def held_out_images(model_dir: str) -> set[str]:
    """Image ids that ``model_dir``, or every member of the ensemble there, validated on
    (its manifest's ``validation_images``) and so never trained on."""
    import json

    from core.errors import UserError
    from core.modeldir import member_dirs
    common = None
    for path in (os.path.join(d, "manifest.json") for d in member_dirs(model_dir)):
        try:
            with open(path) as f:
                ids = set(json.load(f)["validation_images"])
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: no list of held-out validation images ({exc})") from None
        common = ids if common is None else common & ids
    return common


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def multibox_objectness(dataset, dets, multibox_dirs: list[str], min_iou: float = 0.5,
                        iou_weighted: bool = False) -> np.ndarray:
    """(N,) per detection: its MultiBox objectness as ``test.objectness`` computes it; with
    ``iou_weighted`` each prediction's confidence times its IoU with the box (tried, not adopted)."""
    from core.images import read_image
    from proposals.objectness import ObjectnessScorer
    scorer = ObjectnessScorer(multibox_dirs, min_iou, classes=dataset.classes)
    score = (lambda predictions, boxes, _: iou_weighted_objectness(predictions, boxes, min_iou)) if iou_weighted \
        else scorer.score
    ids = dets.image_ids.astype(str)
    class_index = {name: i for i, name in enumerate(dataset.classes)}
    labels = np.array([class_index[str(c)] for c in dets.labels], np.int64)
    out = np.zeros(len(ids))
    for rec in dataset.images:
        mine = np.flatnonzero(ids == rec.image_id)
        if len(mine):
            out[mine] = score(scorer.predict(read_image(rec.path)), dets.boxes[mine], labels[mine])
    return out


def iou_weighted_objectness(predictions, boxes: np.ndarray, min_iou: float) -> np.ndarray:
    """Like ObjectnessScorer.score with class-agnostic MultiBoxes, but max_j conf_j x IoU_j."""
    from core.boxes import pairwise_iou
    each = [np.where(iou >= min_iou, confidence[None, :] * iou, 0.0).max(axis=1)
            for iou, confidence in ((pairwise_iou(np.asarray(boxes, np.float32), predicted), confidence)
                                    for predicted, confidence in predictions)]
    return np.mean(each, axis=0)


def cross_rescore(dataset, dets, variant: str, seed: int = 0, extra: np.ndarray | None = None) -> np.ndarray:
    """Scores rescored by 2-fold cross-fitting over images (never fitted on the image it scores)."""
    from sklearn.linear_model import LogisticRegression

    from eval import detection_status
    y = detection_status(dataset, dets, "voc") == 1      # first: names unknown images or classes as an error
    classes = {c: k for k, c in enumerate(dataset.classes)}
    label = np.array([classes[str(c)] for c in dets.labels])
    x = (np.column_stack([logit(dets.scores), logit(extra)]) if variant == "objectness"
         else geometry_features(dataset, dets, label, variant))
    ids = np.array(sorted({r.image_id for r in dataset.images}))
    np.random.default_rng(seed).shuffle(ids)
    half = np.isin(dets.image_ids.astype(str), ids[: len(ids) // 2])
    scores = dets.scores.copy()
    for fit in (half, ~half):
        for c in range(len(classes)):
            train, apply = fit & (label == c), ~fit & (label == c)
            if apply.any() and len(np.unique(y[train])) == 2:
                model = LogisticRegression(max_iter=2000).fit(x[train], y[train])
                scores[apply] = model.predict_proba(x[apply])[:, 1]
    return scores


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--detections", required=True, nargs="+", help="one or more detections files")
    p.add_argument("--seed", type=int, default=0, help="which halves of the images (default 0)")
    p.add_argument("--objectness", metavar="MULTIBOX_DIR", nargs="+",
                   help="also rescore with these MultiBoxes' mean objectness")
    p.add_argument("--weights", type=float, nargs="+", default=[0.5], help="objectness weights w (default 0.5)")
    p.add_argument("--save-rescored", metavar="DIR", help="write the file rescored with the first weight here")
    p.add_argument("--iou-weighted", action="store_true",
                   help="objectness as each prediction's confidence times its IoU with the box")
    p.add_argument("--held-out-by", metavar="MODEL_DIR",
                   help="score only the images this model (all its members) held out for validation")
    p.add_argument("--as-detected", action="store_true",
                   help="only score the files as they are (no rescoring rows): comparing test-time settings")
    args = p.parse_args()
    bad = [w for w in args.weights if not 0 <= w <= 1]
    if bad:
        p.error(f"--weights {bad[0]:g}: an objectness weight is between 0 and 1")
    if args.as_detected and args.objectness:
        p.error("--as-detected scores the files as they are: leave out --objectness")

    from core.datasets import load_dataset
    from core.structures import Detections, read_detections
    from eval import evaluate
    dataset = load_dataset(args.dataset, args.split)
    if args.held_out_by:
        keep = held_out_images(args.held_out_by)
        dataset.images = [rec for rec in dataset.images if rec.image_id in keep]
        print(f"{len(dataset.images)} {args.split} images held out by every member of {args.held_out_by}\n")
    print("| detections | scores | " + " | ".join(dataset.classes) + " | mAP |")
    print("|---|---|" + "---|" * (len(dataset.classes) + 1))
    for path in args.detections:
        dets = read_detections(path)
        if args.held_out_by:
            mine = np.isin(dets.image_ids.astype(str), [rec.image_id for rec in dataset.images])
            dets = Detections(dets.image_ids[mine], dets.labels[mine], dets.scores[mine], dets.boxes[mine])
        rows = [("as detected", dets.scores)]
        if not args.as_detected:
            rows += [(f"rescored: {v}", cross_rescore(dataset, dets, v, args.seed)) for v in ("border", "border+size")]
        if args.objectness and not args.as_detected:
            from proposals.objectness import fuse_objectness
            obj = multibox_objectness(dataset, dets, args.objectness, iou_weighted=args.iou_weighted)
            fused = [(f"score^{1 - w:g} x objectness^{w:g}", fuse_objectness(dets.scores, obj, w)) for w in args.weights]
            rows += fused + [("rescored: objectness", cross_rescore(dataset, dets, "objectness", args.seed, obj))]
            if args.save_rescored:
                from core.structures import write_detections
                os.makedirs(args.save_rescored, exist_ok=True)
                write_detections(os.path.join(args.save_rescored, os.path.basename(path)),
                                 Detections(dets.image_ids, dets.labels, fused[0][1].astype(np.float64), dets.boxes))
        for name, scores in rows:
            r = evaluate(dataset, Detections(dets.image_ids, dets.labels, scores, dets.boxes), "voc")
            ap = " | ".join(f"{r.per_class[c]:.3f}" for c in dataset.classes)
            print(f"| {os.path.basename(path)} | {name} | {ap} | {r.mAP:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
