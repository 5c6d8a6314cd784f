#!/usr/bin/env python
"""Detect objects in images with a trained GoogLeNet detector (or ensemble).

    python detect.py image.jpg [more.jpg ...] [--model DIR] [--json OUT] [--out DIR]
"""
from pipeline.cli.detect import cli

if __name__ == "__main__":
    cli()
