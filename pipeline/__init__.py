"""The pipeline over the stages: proposals once per image, every ensemble member scores
the regions, the vote, box regression, NMS (runner.py); training orchestration
(train.py: MultiBox, proposal cache, classifier members); the Python API (api.py); and
the command-line programs (cli/)."""

from .api import Detector, load_detector  # noqa: E402  (the package's public face)

__all__ = ["Detector", "load_detector"]
