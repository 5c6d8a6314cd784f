"""Shared ground: what every stage reads and writes, and nothing that runs a network.

boxes (the one box layer), datasets (the one dataset layer: VOC, ILSVRC DET, COCO),
images (decoding), structures (typed results), config (recipes), errors, fileio
(atomic writes), distributed (torchrun helpers), modeldir (the on-disk layout of model
and ensemble directories), visualize (drawing). numpy only: importing ``core`` loads
no torch (tests/test_datasets.py checks), so the evaluator can sit on it.
"""
