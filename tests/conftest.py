"""Shared test helpers: small datasets written to tmp_path, paths to the shared data."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# pyproject runs the suite on every core (pytest-xdist's -n auto): a worker per core, one
# thread each, for torch here and for the train.py / detect.py the tests start (two
# workers at two threads each on two cores would take turns)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = ROOT.parent / "shared" / "datasets"
BCCD = SHARED / "bccd"
RACCOON = SHARED / "raccoon"
needs_bccd = pytest.mark.skipif(not BCCD.is_dir(), reason="../shared/datasets/bccd not present")


def bench_script(name: str):
    """bench/<name>.py as a module (the bench scripts are not a package and import each other by name)."""
    import importlib.util
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def voc_xml(filename, width, height, objects) -> str:
    """objects: (name, [xmin, ymin, xmax, ymax]) or (name, box, difficult)."""
    parts = [f"<annotation><filename>{filename}</filename>"
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for obj in objects:
        name, box = obj[0], obj[1]
        difficult = obj[2] if len(obj) > 2 else 0
        parts.append(f"<object><name>{name}</name><truncated>0</truncated><difficult>{difficult}</difficult>"
                     "<bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
                     + "</bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_image(path, width, height, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def make_voc(root: Path, images: dict, split="test", size=(64, 48), write_images=True) -> Path:
    """images: {image_id: [objects]} -> a VOC-layout dataset at root."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for k, (image_id, objects) in enumerate(images.items()):
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", *size, objects))
        if write_images:
            write_image(root / "JPEGImages" / f"{image_id}.jpg", *size, seed=k)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")
    return root


def write_dets(path: Path, dets) -> Path:
    """dets: (image, label, score, box) tuples."""
    path.write_text(json.dumps([{"image": i, "label": l, "score": s, "box": list(b)} for i, l, s, b in dets]))
    return path


def train_tiny(cfg, out, cache, *extra):
    """Run train.py on a recipe in a subprocess (one selective-search worker, no bars)."""
    import subprocess
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--out", str(out),
                           "--cache-dir", str(cache), "--no-progress", "--workers", "1", *map(str, extra)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def run_script():
    """Run a root CLI script in a subprocess; returns CompletedProcess."""
    import subprocess

    def run(script, *args, cwd=None):
        return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                              capture_output=True, text=True, cwd=cwd or ROOT, timeout=600)
    return run


@pytest.fixture
def run_cli_here(capsys):
    """Run a CLI's main(argv) in this process, through the same error handling as the console script.

    Returns an object with returncode, stdout and stderr like run_script's; it saves a torch import
    (~5 s on 2 cores) per call, so tests that call a CLI many times use it after one real subprocess.
    """
    import importlib
    from types import SimpleNamespace

    from core.errors import run_cli

    def run(module, *args):
        main = importlib.import_module(module).main
        capsys.readouterr()
        try:
            run_cli(lambda: main([str(a) for a in args]))
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code or 0, stdout=captured.out, stderr=captured.err)
    return run


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    from synthetic import make_shapes
    return make_shapes(tmp_path_factory.mktemp("shapes") / "data", 8)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, shapes_data):
    """A tiny detector (combined proposals, shared mode) trained once through train.py."""
    import subprocess

    from synthetic import tiny_config
    work = tmp_path_factory.mktemp("tiny_model")
    cfg = tiny_config(work / "cfg.yaml", shapes_data, method="combined", epochs=2)
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--out", str(work / "model"),
                          "--cache-dir", str(work / "cache"), "--no-progress", "--workers", "1"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return {"model": work / "model", "cache": work / "cache", "data": shapes_data, "log": out.stderr, "config": cfg}
