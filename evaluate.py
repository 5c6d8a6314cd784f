#!/usr/bin/env python
"""Score detections on a dataset split with the ILSVRC, VOC or COCO rules.

    python evaluate.py --dataset DIR --split NAME --detections FILE --metric voc
"""
from pipeline.cli.evaluate import cli

if __name__ == "__main__":
    cli()
