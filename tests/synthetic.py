"""A tiny, deterministic detection dataset: coloured shapes on noise, VOC layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import voc_xml

CLASSES = ("box", "disc")


def make_shapes(root: Path, n_images: int = 8, size=(96, 80), seed: int = 0, splits=None) -> Path:
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    ids = []
    w, h = size
    for i in range(n_images):
        im = Image.fromarray(rng.integers(90, 140, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(im)
        objects = []
        for _ in range(rng.integers(1, 3)):
            bw, bh = rng.integers(18, 34, 2)
            x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
            cls = CLASSES[rng.integers(2)]
            box = [int(x), int(y), int(x + bw), int(y + bh)]
            if cls == "box":
                draw.rectangle(box, fill=(220, 30, 30))
            else:
                draw.ellipse(box, fill=(30, 30, 220))
            objects.append((cls, box))
        image_id = f"shape_{i:03d}"
        im.save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", w, h, objects))
        ids.append(image_id)
    for name, part in (splits or {"train": ids, "test": ids}).items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(part) + "\n")
    return root


TINY_CONFIG = """
data: {{dataset: {dataset}, train_split: train, test_split: test}}
proposals:
  method: {method}
  multibox_top_k: 20
  selective_search: {{mode: fast, k_scale: 1.0, max_side: 200, min_size: 6, top_n: 200}}
  multibox: {{num_boxes: 20, input_size: 64, width: 0.125, epochs: 2, batch_size: 4, lr_steps: [10]}}
model:
  arch: googlenet
  width: 0.125
  region_mode: {mode}
  input_size: 64
  context_pad: 4
  image_scale: 80
  roi_size: 14
train:
  epochs: {epochs}
  images_per_batch: 2
  rois_per_image: 16
  lr: 0.01
  lr_steps: [10]
  warmup_iters: 2
  scale_jitter: [72, 80]
  seed: {seed}
test: {{score_threshold: 0.01, max_per_image: 20, batch_regions: 64}}
"""


def tiny_config(path: Path, dataset: Path, method="ss", mode="shared", epochs=2, seed=0) -> Path:
    path.write_text(TINY_CONFIG.format(dataset=dataset, method=method, mode=mode, epochs=epochs, seed=seed))
    return path
