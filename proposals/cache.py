"""The proposal cache: computed once per image and parameter set, then read by every stage.

Layout: ``<cache_dir>/proposals/<method>-<params hash>/<image hash>.npz`` holding
``boxes`` (float32, best first), ``scores`` and ``seconds`` (compute time). The params
hash covers every setting that changes the boxes (and, for MultiBox, the weights file),
so a change of parameters means a new folder: nothing stale is ever read. The image
hash covers its absolute path, size and modification time. Each file is written
atomically, so a killed run resumes where it stopped.

``combined`` is not cached: it is the union of the two cached methods, computed on read.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time

import numpy as np

from detector.boxes import pairwise_iou
from detector.fileio import atomic_write, write_json


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "googlenet-detector")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: str) -> str:
    st = os.stat(path)
    return _digest([os.path.abspath(path), st.st_size, st.st_mtime_ns])


class ProposalStore:
    """Cache folder of one method with one parameter set."""

    def __init__(self, cache_dir: str, method: str, params: dict):
        self.method = method
        self.dir = os.path.join(cache_dir, "proposals", f"{method}-{_digest(params)}")
        os.makedirs(self.dir, exist_ok=True)
        meta = os.path.join(self.dir, "params.json")
        if not os.path.exists(meta):
            write_json(meta, {"method": method, "params": params})

    def path(self, image_path: str) -> str:
        return os.path.join(self.dir, file_digest(image_path) + ".npz")

    def has(self, image_path: str) -> bool:
        return os.path.exists(self.path(image_path))

    def get(self, image_path: str):
        with np.load(self.path(image_path)) as z:
            return z["boxes"], z["scores"], float(z["seconds"])

    def put(self, image_path: str, boxes, scores, seconds: float) -> None:
        with atomic_write(self.path(image_path), "wb") as f:
            np.savez(f, boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32),
                     seconds=np.float64(seconds))


def ss_params(ss_cfg) -> dict:
    return dataclasses.asdict(ss_cfg)


@functools.lru_cache(maxsize=32)
def content_digest(path: str) -> str:
    """Hash of a file's bytes: the same MultiBox weights give the same key wherever the
    file lies (copied, or linked from an ensemble member)."""
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:16]


def multibox_params(model_dir: str, top_k: int, nms_iou: float) -> dict:
    return {"weights": content_digest(os.path.realpath(os.path.join(model_dir, "multibox.pt"))), "top_k": top_k,
            "nms": nms_iou}


def combine(ss_boxes: np.ndarray, mb_boxes: np.ndarray, duplicate_iou: float) -> np.ndarray:
    """MultiBox boxes first (scored, best first), then the selective-search boxes that no
    MultiBox box already covers at IoU >= duplicate_iou."""
    if len(mb_boxes) and len(ss_boxes):
        covered = pairwise_iou(ss_boxes, mb_boxes).max(axis=1) >= duplicate_iou
        ss_boxes = ss_boxes[~covered]
    return np.vstack([mb_boxes.reshape(-1, 4), ss_boxes.reshape(-1, 4)]).astype(np.float32)


# ------------------------------------------------------------------ computing
def _ss_worker(job):
    image_path, ss_cfg_dict, cache_dir = job
    from detector.config import SelectiveSearchConfig
    from detector.images import read_image

    from .selective_search import selective_search
    t = time.perf_counter()
    image = np.ascontiguousarray(read_image(image_path)[:, :, ::-1])       # RGB -> BGR
    boxes = selective_search(image, SelectiveSearchConfig(**ss_cfg_dict))
    seconds = time.perf_counter() - t
    ProposalStore(cache_dir, "ss", ss_cfg_dict).put(image_path, boxes, np.zeros(len(boxes), np.float32), seconds)
    return image_path


class ProposalSource:
    """Proposals of the configured method for any image: from the cache, computing (and
    caching) what is missing. The MultiBox network is loaded once, on first use; an
    image the caller already decoded is not decoded again."""

    def __init__(self, proposal_cfg, cache_dir: str | None = None, multibox_dir: str | None = None,
                 device="cpu", workers: int = 2, progress: bool = True):
        from detector.errors import UserError
        self.cfg, self.method = proposal_cfg, proposal_cfg.method
        self.cache_dir = cache_dir or default_cache_dir()
        from detector import distributed
        self.multibox_dir, self.device, self.workers = multibox_dir, device, workers
        self.progress = progress and distributed.is_main()
        self.stores: dict[str, ProposalStore] = {}
        if self.method in ("ss", "combined"):
            self.stores["ss"] = ProposalStore(self.cache_dir, "ss", ss_params(proposal_cfg.selective_search))
        if self.method in ("multibox", "combined"):
            if not (multibox_dir and os.path.exists(os.path.join(multibox_dir, "multibox.pt"))):
                raise UserError(f"proposal method {self.method!r} needs a trained MultiBox model "
                                f"(looked for {multibox_dir or '<none>'}/multibox.pt)")
            self.stores["multibox"] = ProposalStore(self.cache_dir, "multibox",
                                                    multibox_params(multibox_dir, proposal_cfg.multibox_top_k,
                                                                    proposal_cfg.multibox_nms))
        self._multibox = None

    def multibox_net(self):
        if self._multibox is None:
            from .multibox import load_multibox
            self._multibox = load_multibox(self.multibox_dir, self.device)
        return self._multibox

    def prepare(self, image_paths: list[str], batch_size: int = 8) -> None:
        """Fill the cache for these images (selective search in worker processes,
        MultiBox in batches), with progress bars. Under torchrun each rank fills its
        shard, then all wait for all (the cache must be on a file system they share)."""
        from tqdm import tqdm

        from detector import distributed
        from detector.images import read_image
        image_paths = distributed.shard(list(dict.fromkeys(image_paths)))
        if "ss" in self.stores:
            todo = [p for p in dict.fromkeys(image_paths) if not self.stores["ss"].has(p)]
            jobs = [(p, ss_params(self.cfg.selective_search), self.cache_dir) for p in todo]
            with tqdm(total=len(todo), desc="selective search", unit="img", disable=not self.progress or not todo) as bar:
                if self.workers > 1 and len(todo) > 1:
                    import multiprocessing as mp
                    with mp.get_context("spawn").Pool(self.workers) as pool:
                        for _ in pool.imap_unordered(_ss_worker, jobs):
                            bar.update()
                else:
                    for job in jobs:
                        _ss_worker(job)
                        bar.update()
        if "multibox" in self.stores:
            todo = [p for p in dict.fromkeys(image_paths) if not self.stores["multibox"].has(p)]
            with tqdm(total=len(todo), desc="multibox", unit="img", disable=not self.progress or not todo) as bar:
                for i in range(0, len(todo), batch_size):
                    chunk = todo[i:i + batch_size]
                    self._compute_multibox(chunk, [read_image(p) for p in chunk])
                    bar.update(len(chunk))
        distributed.barrier()

    def _compute_multibox(self, paths, images):
        from .multibox import multibox_proposals
        net, size = self.multibox_net()
        t = time.perf_counter()
        results = multibox_proposals(net, size, images, self.cfg.multibox_top_k, self.device,
                                     self.cfg.multibox_nms)
        seconds = (time.perf_counter() - t) / len(paths)
        for p, (boxes, scores) in zip(paths, results):
            self.stores["multibox"].put(p, boxes, scores, seconds)

    def _boxes(self, method: str, image_path: str, image_rgb):
        store = self.stores[method]
        if not store.has(image_path):
            if image_rgb is None:
                from detector.images import read_image
                image_rgb = read_image(image_path)
            if method == "multibox":
                self._compute_multibox([image_path], [image_rgb])
            else:
                from .selective_search import selective_search
                t = time.perf_counter()
                boxes = selective_search(np.ascontiguousarray(image_rgb[:, :, ::-1]), self.cfg.selective_search)
                store.put(image_path, boxes, np.zeros(len(boxes), np.float32), time.perf_counter() - t)
        boxes, _, seconds = store.get(image_path)
        return boxes, seconds

    def get(self, image_path: str, image_rgb=None) -> tuple[np.ndarray, float]:
        """(boxes, best first; seconds they took to compute)."""
        if self.method != "combined":
            return self._boxes(self.method, image_path, image_rgb)
        mb, mb_sec = self._boxes("multibox", image_path, image_rgb)
        ss, ss_sec = self._boxes("ss", image_path, image_rgb)
        return combine(ss, mb, self.cfg.duplicate_iou), ss_sec + mb_sec
