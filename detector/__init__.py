"""The R-CNN stage: a GoogLeNet region classifier over proposals and its heads.

region_classifier (regions -> features, class logits, box deltas), sampling (which
proposals train it), fine_tune (training it on cached proposals), heads (ridge box
regressors and SVMs on frozen features), model (a trained model directory: load, score
regions, regress boxes, select detections).
"""
