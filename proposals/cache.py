"""The proposal cache: a generator's boxes computed once per image and parameter set.

Layout: ``<cache_dir>/proposals/<source>-<params hash>/<image hash>.npz`` with
``boxes`` (float32, best first), ``scores``, ``seconds`` (compute time) and ``key``
(the two hashes, checked on read). The params hash covers every setting that changes
the boxes (for MultiBox, the weights file's bytes), so new parameters mean a new folder
and nothing stale is read. The image hash is of the decoded pixels, so the same picture
under another name or path is one entry, and an edited file is a new one. ``combined``
is not stored: it is the union of the two stored sources, made on read.

Entries are written atomically. One that cannot be read (truncated, not an archive,
another key, non-finite boxes) is reported once with its file name, deleted and
recomputed: the cache heals itself. Temporary files left by a killed writer are
removed when a store opens.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import logging
import os
import time

import numpy as np

from core.fileio import atomic_write, write_json

from .generator import ProposalGenerator, union_proposals

log = logging.getLogger(__name__)
STALE_TEMP_SECONDS = 3600          # a writer's temp file older than this is a leftover


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "googlenet-detector")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def image_digest(image_rgb: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape (~1 ms for a 640x480 image)."""
    h = hashlib.sha1(repr(image_rgb.shape).encode())
    h.update(np.ascontiguousarray(image_rgb).data)
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=32)
def content_digest(path: str) -> str:
    """Hash of a file's bytes: the same MultiBox weights give the same key wherever the
    file lies (copied, or linked from an ensemble member)."""
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:16]


def source_params(generator: ProposalGenerator, source: str) -> dict:
    """The settings that decide ``source``'s boxes (``ss`` or ``multibox``)."""
    cfg = generator.cfg
    if source == "ss":
        from .selective_search import RANK_SEED
        # the seed's entry keeps boxes cached before it existed (ranked by an unseeded rand) apart
        return {**dataclasses.asdict(cfg.selective_search), "rank_seed": RANK_SEED}
    return {"weights": content_digest(os.path.realpath(os.path.join(generator.multibox_dir, "multibox.pt"))),
            "top_k": cfg.multibox_top_k, "nms": cfg.multibox_nms}


class ProposalStore:
    """The cache folder of one source with one parameter set."""

    def __init__(self, cache_dir: str, source: str, params: dict):
        self.source = source
        self.params_key = _digest(params)
        self.dir = os.path.join(cache_dir, "proposals", f"{source}-{self.params_key}")
        os.makedirs(self.dir, exist_ok=True)
        meta = os.path.join(self.dir, "params.json")
        if not os.path.exists(meta):
            write_json(meta, {"source": source, "params": params})
        now = time.time()
        for tmp in glob.glob(os.path.join(self.dir, ".*.tmp")):
            try:
                if now - os.path.getmtime(tmp) > STALE_TEMP_SECONDS:
                    os.remove(tmp)
            except OSError:
                pass

    def path(self, key: str) -> str:
        return os.path.join(self.dir, key + ".npz")

    def has(self, key: str) -> bool:
        return os.path.exists(self.path(key))

    def get(self, key: str) -> tuple[np.ndarray, float] | None:
        """(boxes, seconds), or None when missing or unreadable (then deleted)."""
        path = self.path(key)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path) as z:
                boxes, seconds, stored = z["boxes"], float(z["seconds"]), str(z["key"])
            if stored != f"{self.params_key}/{key}":
                raise ValueError(f"holds the entry {stored}")
            if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
                raise ValueError(f"boxes of shape {boxes.shape} that are not all finite")
        except Exception as exc:          # zip, pickle, key and value errors alike: recompute
            log.warning("proposal cache: %s is unreadable (%s); deleted, recomputing", path, exc)
            try:
                os.remove(path)
            except OSError:
                pass
            return None
        return boxes, seconds

    def put(self, key: str, boxes, scores, seconds: float) -> None:
        with atomic_write(self.path(key), "wb") as f:
            np.savez(f, boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32),
                     seconds=np.float64(seconds), key=np.array(f"{self.params_key}/{key}"))


def _ss_worker(job):
    """Selective search of one image file in a worker process, written to the cache."""
    image_path, key, params, cache_dir = job               # params: source_params(..., "ss")
    from core.config import SelectiveSearchConfig
    from core.images import read_image

    from .selective_search import selective_search
    t = time.perf_counter()
    image = np.ascontiguousarray(read_image(image_path)[:, :, ::-1])       # RGB -> BGR
    settings = {k: v for k, v in params.items() if k in SelectiveSearchConfig.__dataclass_fields__}
    boxes = selective_search(image, SelectiveSearchConfig(**settings))
    ProposalStore(cache_dir, "ss", params).put(key, boxes, np.zeros(len(boxes), np.float32),
                                               time.perf_counter() - t)
    return image_path


class ProposalCache:
    """A ProposalGenerator behind a cache: the same ``propose(image_rgb)``, computing
    (and storing) only what is missing, plus ``prepare(paths)`` to fill the cache for a
    dataset up front (selective search in worker processes, MultiBox in batches)."""

    def __init__(self, generator: ProposalGenerator, cache_dir: str | None = None, workers: int = 2,
                 progress: bool = True):
        from core import distributed
        self.generator, self.cfg, self.method = generator, generator.cfg, generator.method
        self.cache_dir = cache_dir or default_cache_dir()
        self.workers, self.progress = workers, progress and distributed.is_main()
        self.stores = {s: ProposalStore(self.cache_dir, s, source_params(generator, s))
                       for s in ("ss", "multibox") if generator.uses(s)}

    def _source(self, source: str, key: str, image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        store = self.stores[source]
        hit = store.get(key)
        if hit is not None:
            return hit
        t = time.perf_counter()
        if source == "ss":
            boxes, scores = self.generator.selective_search(image_rgb), None
        else:
            boxes, scores = self.generator.multibox([image_rgb])[0]
        seconds = time.perf_counter() - t
        store.put(key, boxes, np.zeros(len(boxes), np.float32) if scores is None else scores, seconds)
        return np.asarray(boxes, np.float32), seconds

    def propose(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """(boxes best first, seconds they took to compute when first computed)."""
        key = image_digest(image_rgb)
        if self.method != "combined":
            return self._source(self.method, key, image_rgb)
        mb, mb_sec = self._source("multibox", key, image_rgb)
        ss, ss_sec = self._source("ss", key, image_rgb)
        return union_proposals(ss, mb, self.cfg.duplicate_iou), ss_sec + mb_sec

    def prepare(self, image_paths: list[str], batch_size: int = 8) -> None:
        """Fill the cache for these image files, with progress bars. Under torchrun each
        rank fills its shard, then all wait for all (the cache must be on a file system
        they share)."""
        from tqdm import tqdm

        from core import distributed
        from core.images import read_image
        image_paths = distributed.shard(list(dict.fromkeys(image_paths)))
        missing = {s: [] for s in self.stores}           # source -> [(path, key)]
        for path in tqdm(image_paths, desc="proposal cache", unit="img", leave=False,
                         disable=not self.progress or len(image_paths) < 50):
            key = image_digest(read_image(path))
            for source, store in self.stores.items():
                if store.get(key) is None:
                    missing[source].append((path, key))
        if missing.get("ss"):
            params = source_params(self.generator, "ss")
            jobs = [(p, k, params, self.cache_dir) for p, k in missing["ss"]]
            with tqdm(total=len(jobs), desc="selective search", unit="img", disable=not self.progress) as bar:
                if self.workers > 1 and len(jobs) > 1:
                    import multiprocessing as mp
                    with mp.get_context("spawn").Pool(self.workers) as pool:
                        for _ in pool.imap_unordered(_ss_worker, jobs):
                            bar.update()
                else:
                    for job in jobs:
                        _ss_worker(job)
                        bar.update()
        if missing.get("multibox"):
            todo = missing["multibox"]
            with tqdm(total=len(todo), desc="multibox", unit="img", disable=not self.progress) as bar:
                for i in range(0, len(todo), batch_size):
                    chunk = todo[i:i + batch_size]
                    t = time.perf_counter()
                    results = self.generator.multibox([read_image(p) for p, _ in chunk])
                    seconds = (time.perf_counter() - t) / len(chunk)
                    for (_, key), (boxes, scores) in zip(chunk, results):
                        self.stores["multibox"].put(key, boxes, scores, seconds)
                    bar.update(len(chunk))
        distributed.barrier()


def proposal_source(proposal_cfg, multibox_dir: str | None = None, device="cpu", cache_dir: str | None = None,
                    use_cache: bool = True, workers: int = 2, progress: bool = True):
    """The generator, behind the cache when ``use_cache`` (training, evaluation);
    without it for a handful of images (detect.py). Both answer ``propose(image_rgb)``
    and ``prepare(paths)``."""
    generator = ProposalGenerator(proposal_cfg, multibox_dir, device)
    return ProposalCache(generator, cache_dir, workers, progress) if use_cache else generator
