"""Slow, literal transcriptions of the devkits' loops: the oracle the vectorized
evaluator is checked against on random data. Never used by the library."""
import numpy as np

from eval.ap import area_ap, voc07_ap


def _iou_plus1(bb, gt):
    iw = min(bb[2], gt[2]) - max(bb[0], gt[0]) + 1
    ih = min(bb[3], gt[3]) - max(bb[1], gt[1]) + 1
    if iw > 0 and ih > 0:
        ua = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - iw * ih
        return iw * ih / ua
    return None


def voc_reference(images, dets, cls, use_07):
    """VOCevaldet for one class. images: {id: [(cls, box, difficult)]}; dets: (id, cls, score, box)."""
    gt = {i: [o for o in objs if o[0] == cls] for i, objs in images.items()}
    used = {i: [False] * len(g) for i, g in gt.items()}
    npos = sum(not o[2] for g in gt.values() for o in g)
    mine = [d for d in dets if d[1] == cls]
    order = sorted(range(len(mine)), key=lambda k: -mine[k][2])   # stable, like MATLAB sort
    tp, fp = np.zeros(len(mine)), np.zeros(len(mine))
    for pos, k in enumerate(order):
        image, _, _, bb = mine[k]
        ovmax, jmax = -np.inf, -1
        for j, o in enumerate(gt[image]):
            ov = _iou_plus1(bb, o[1])
            if ov is not None and ov > ovmax:
                ovmax, jmax = ov, j
        if ovmax >= 0.5:
            if not gt[image][jmax][2]:
                if not used[image][jmax]:
                    tp[pos], used[image][jmax] = 1, True
                else:
                    fp[pos] = 1
        else:
            fp[pos] = 1
    return _ap(tp, fp, npos, voc07_ap if use_07 else area_ap)


def ilsvrc_reference(images, dets, classes, blacklist):
    """eval_detection.m for all classes. blacklist: set of (image id, class)."""
    ids = list(images)
    tp_all, fp_all, lab_all, conf_all = [], [], [], []
    npos = {c: sum(o[0] == c for objs in images.values() for o in objs) for c in classes}
    for image in ids:
        objs = images[image]
        w = np.array([o[1][3] - o[1][1] + 1 for o in objs])
        h = np.array([o[1][2] - o[1][0] + 1 for o in objs])
        thr = np.minimum(0.5, w * h / ((w + 10) * (h + 10)))
        mine = [d for d in dets if d[0] == image]
        mine = [mine[k] for k in sorted(range(len(mine)), key=lambda k: -mine[k][2])]
        detected = [False] * len(objs)
        for _, c, s, bb in mine:
            tp = fp = 0
            if (image, c) not in blacklist:
                ovmax, kmax = -np.inf, -1
                for k, o in enumerate(objs):
                    if o[0] != c or detected[k]:
                        continue
                    ov = _iou_plus1(bb, o[1])
                    if ov is not None and ov >= thr[k] and ov > ovmax:
                        ovmax, kmax = ov, k
                if kmax >= 0:
                    tp, detected[kmax] = 1, True
                else:
                    fp = 1
            tp_all.append(tp), fp_all.append(fp), lab_all.append(c), conf_all.append(s)
        for o in objs:
            if (image, o[0]) in blacklist:
                npos[o[0]] -= 1
    order = sorted(range(len(conf_all)), key=lambda k: -conf_all[k])
    out = {}
    for c in classes:
        sel = [k for k in order if lab_all[k] == c]
        tp = np.array([tp_all[k] for k in sel], float)
        fp = np.array([fp_all[k] for k in sel], float)
        out[c] = _ap(tp, fp, npos[c], area_ap) if npos[c] > 0 else None
    return out


def _ap(tp, fp, npos, ap_fn):
    keep = (tp + fp) > 0          # rows counted as neither add no point (see eval.__init__)
    tp, fp = np.cumsum(tp[keep]), np.cumsum(fp[keep])
    return ap_fn(tp / npos, tp / (tp + fp))
