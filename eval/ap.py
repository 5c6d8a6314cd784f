"""Average precision from a ranked list of true/false positives, as the devkits compute it."""
from __future__ import annotations

import numpy as np

# MATLAB's `0:0.1:1` (VOCevaldet's 11 recall levels). MATLAB builds a colon vector from
# both ends, a + k*d for the first half and b - (n-k)*d for the second, so its 0.3 is
# 3*0.1 = 0.30000000000000004 while its 0.6 and 0.7 are exactly 1-0.4 and 1-0.3. A recall
# of exactly 0.3 (3 of 10 objects) therefore does *not* reach the 0.3 level, and 0.7 does.
VOC07_RECALL_LEVELS = np.array([k * 0.1 for k in range(6)] + [1 - k * 0.1 for k in range(4, -1, -1)])


def precision_recall(is_tp: np.ndarray, num_positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative recall and precision down a list already sorted by descending score."""
    tp = np.cumsum(is_tp, dtype=np.float64)
    fp = np.cumsum(~is_tp, dtype=np.float64)
    return tp / num_positives, tp / (tp + fp)


def area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOCap (VOC2010+ and ILSVRC): area under the precision envelope (precision made
    monotone decreasing), summed where recall changes."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]      # fmax: MATLAB's max skips NaN
    changed = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changed] - mrec[changed - 1]) * mpre[changed]))


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007's 11-point interpolated AP: mean over t in 0:0.1:1 of max precision at
    recall >= t (0 where no point reaches t)."""
    if len(recall) == 0:
        return 0.0
    reach = recall[None, :] >= VOC07_RECALL_LEVELS[:, None]
    best = np.where(reach, precision[None, :], -np.inf).max(axis=1)
    return float(np.sum(np.where(np.isfinite(best), best, 0.0)) / 11)
