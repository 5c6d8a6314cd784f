"""MultiBox (Erhan et al., "Scalable Object Detection using Deep Neural Networks",
CVPR 2014): a GoogLeNet trunk whose head predicts K boxes and K objectness logits.

* Priors: k-means over the training set's box shapes (width, height, normalized to
  [0, 1] by image size) gives A shapes; placed at the centres of the S x S cells of a
  trunk map (stride 32: after 5b; stride 16: after 4e) they make K = S*S*A >= num_boxes
  priors. This is the
  convolutional-prior form of MultiBox (Szegedy et al., "Scalable, High-Quality Object
  Detection", 2014): a 3x3 conv head predicts, per cell and shape, an offset from the
  prior (in units of the prior's size) and an objectness logit. Erhan's original fully
  connected head needs far more than a few hundred training images to learn where
  objects are; the convolutional head shares what it learns across positions.
* Training: ground truth is assigned to predictions by bipartite matching (scipy's
  linear_sum_assignment) over  alpha/2 * ||l_i - g_j||^2 - log c_i + log(1 - c_i), the
  change in  F = alpha * F_loc + F_conf  when prediction i takes object j; the loss is
  that F: an L2 location loss on matched predictions plus a logistic confidence loss on
  all of them. Priors with IoU >= positive_iou to an object count as matched too
  (threshold_matches explains why).
* Inference: the top boxes by objectness.
* Optionally (``proposals.multibox.class_confidences``) the head also predicts, per
  prior, a confidence for each class (one-vs-rest logistic, positive on the priors
  matched to an object of that class): not used for proposals, which stay class-agnostic
  as in the paper, but for ``test.objectness``, so that a box called a platelet is
  vouched for by MultiBox's platelet confidence, not by a red cell beside it.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import torch
from torch import nn

from core.errors import UserError

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------- priors
def normalized_boxes(dataset) -> np.ndarray:
    return np.vstack([rec.boxes / [rec.width, rec.height, rec.width, rec.height]
                      for rec in dataset.images if len(rec.boxes)] or [np.zeros((0, 4))])


def kmeans_shapes(boxes: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``(k, 2)`` prior shapes (width, height): k-means centres of normalized gt box
    shapes, largest first. With fewer boxes than 2k, jittered copies are added first."""
    from sklearn.cluster import KMeans
    if len(boxes) == 0:
        raise UserError("MultiBox priors: the training split has no boxes")
    shapes = np.column_stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    if len(shapes) < 2 * k:
        rng = np.random.default_rng(seed)
        reps = int(np.ceil(2 * k / len(shapes)))
        shapes = np.vstack([shapes, np.tile(shapes, (reps, 1)) * rng.lognormal(0, 0.1, (len(shapes) * reps, 2))])
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(shapes.clip(1e-3, 1))
    centres = km.cluster_centers_
    return centres[np.argsort(-centres.prod(1), kind="stable")].astype(np.float32)


def grid_size(input_size: int, stride: int = 32) -> int:
    return max(1, input_size // stride)


def make_priors(shapes: np.ndarray, grid: int) -> np.ndarray:
    """``(grid*grid*A, 4)`` normalized boxes: every shape centred in every cell, in the
    order (row, column, shape) that the head's output is flattened in."""
    centres = (np.arange(grid) + 0.5) / grid
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    c = np.stack([cx, cy], -1).reshape(-1, 1, 2)                       # (S*S, 1, 2)
    half = shapes[None, :, :] / 2                                       # (1, A, 2)
    return np.concatenate([c - half, c + half], -1).reshape(-1, 4).astype(np.float32)


def shapes_per_cell(num_boxes: int, input_size: int, stride: int = 32) -> int:
    return int(np.ceil(num_boxes / grid_size(input_size, stride) ** 2))


# ------------------------------------------------------------------------- network
class MultiBoxNet(nn.Module):
    def __init__(self, shapes: np.ndarray, grid: int, width: float = 0.5, batch_norm: bool = True,
                 stride: int = 32, num_classes: int = 0):
        super().__init__()
        from networks.googlenet import GoogLeNet, out_channels
        self.grid, self.num_shapes, self.num_classes = grid, len(shapes), num_classes
        self.outputs = 5 + num_classes           # per prior: 4 offsets, objectness, class confidences
        # stride 32: the whole trunk (5b); stride 16: up to 4e, the last stride-16 map
        self.last_stage = "5b" if stride >= 32 else "4e"
        self.register_buffer("shapes", torch.as_tensor(shapes, dtype=torch.float32))
        self.register_buffer("priors", torch.as_tensor(make_priors(shapes, grid)))
        self.trunk = GoogLeNet(num_outputs=1, batch_norm=batch_norm, width=width, aux_classifiers=False)
        self.trunk.classifier = nn.Identity()        # only the stages are used
        hidden = max(64, int(256 * width))
        if self.last_stage != "5b":              # the unused stages would only waste memory
            for name in ("pool4", "5a", "5b"):
                del self.trunk.stages[name]
        self.head = nn.Sequential(nn.Conv2d(out_channels(self.last_stage, width), hidden, 3, padding=1),
                                  nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, self.num_shapes * self.outputs, 1))
        nn.init.normal_(self.head[2].weight, std=0.01)
        bias = torch.zeros(self.num_shapes, self.outputs)
        bias[:, 4:] = -4.0                           # confidences start low: most priors are empty
        self.head[2].bias.data = bias.flatten()

    def forward(self, images):
        """images ``(B, 3, S, S)`` -> (offsets ``(B, K, 4)`` in prior sizes, objectness logits
        ``(B, K)``, class logits ``(B, K, C)``; C = 0 without class confidences)."""
        x, _ = self.trunk.run(images, stop=self.last_stage)
        x = nn.functional.adaptive_avg_pool2d(x, self.grid)
        out = self.head(x).permute(0, 2, 3, 1).reshape(len(images), -1, self.outputs)   # (B, S*S*A, 5 + C)
        return out[..., :4], out[..., 4], out[..., 5:]

    def boxes(self, offsets):
        """Normalized boxes from predicted offsets: prior + offset * prior size."""
        size = (self.priors[:, 2:] - self.priors[:, :2]).repeat(1, 2)
        return self.priors + offsets * size


# ------------------------------------------------------------------------- matching + loss
def match(locations: torch.Tensor, logits: torch.Tensor, gt: torch.Tensor, alpha: float):
    """Bipartite assignment of gt objects to predictions for one image: (pred idx, gt idx).

    ``locations (K, 4)`` and ``gt (G, 4)`` in normalized image coordinates. The cost of
    prediction i taking object j is  alpha * (1 - IoU(l_i, g_j)) - log c_i + log(1 - c_i):
    a location term plus the change the match makes to F_conf. (Erhan et al. used the L2
    distance as the location term; between a prior of the right shape one cell away and
    a prior of the wrong shape in the right cell, L2 hardly decides, and the assignment
    flickers from image to image. IoU decides it, so the targets stay consistent.)"""
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_iou
    if len(gt) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    with torch.no_grad():
        loc = alpha * (1 - box_iou(locations, gt))                                 # (K, G)
        conf = (nn.functional.softplus(-logits) - nn.functional.softplus(logits))[:, None]
        cost = (loc + conf).cpu().numpy()
    if not np.isfinite(cost).all():
        raise UserError("MultiBox training diverged (non-finite predictions); lower proposals.multibox.lr "
                        "or loc_weight")
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def threshold_matches(priors: torch.Tensor, gt: torch.Tensor, rows, cols, min_iou: float):
    """The bipartite match plus every other prior with IoU >= ``min_iou`` to an object
    (each to its best object). Alone, the bipartite match labels a prior that overlaps an
    object almost as well as the chosen one a negative; the network sees the same
    features called both and learns only the base rate. (Szegedy et al. 2014 and SSD
    add these positives for that reason.)"""
    from torchvision.ops import box_iou
    if min_iou <= 0 or len(gt) == 0:
        return rows, cols
    best_iou, best_gt = box_iou(priors, gt).max(1)
    extra = (best_iou >= min_iou).cpu().numpy()
    extra[rows] = False
    idx = np.flatnonzero(extra)
    return np.concatenate([rows, idx]), np.concatenate([cols, best_gt.cpu().numpy()[idx]])


def multibox_loss(net, offsets, logits, gts: list[torch.Tensor], alpha: float, match_on: str = "prior",
                  match_alpha: float | None = None, positive_iou: float = 0.0,
                  class_logits: torch.Tensor | None = None, labels: list[torch.Tensor] | None = None):
    """alpha * F_loc + F_conf (+ F_class) per matched prediction; returns (loss, loc part,
    conf part, class part). ``gts[b]``: ``(G_b, 4)`` normalized gt boxes; with
    ``class_logits`` ``(B, K, C)`` (C > 0), ``labels[b]`` ``(G_b,)`` are their classes and
    F_class is the one-vs-rest logistic loss of every prior's class confidences (the
    matched priors' own class positive, all else negative); the matching ignores it.
    F_loc is the L2 distance of matched predictions to their objects, measured in units
    of the prior's size (bounded below by the smallest prior, so tiny objects cannot blow
    the loss up).

    ``match_on="prediction"`` is Erhan et al.'s assignment (predicted locations in the
    cost); ``"prior"`` puts the priors' own locations there, so that an object keeps
    going to the same nearby prior while unmatched predictions wander: the stable
    assignment of the convolutional-prior MultiBox."""
    boxes = net.boxes(offsets)
    conf_target = torch.zeros_like(logits)
    with_classes = class_logits is not None and class_logits.shape[-1] > 0
    class_target = torch.zeros_like(class_logits) if with_classes else None
    loc_terms = []
    for b, gt in enumerate(gts):
        rows, cols = match(boxes[b] if match_on == "prediction" else net.priors, logits[b], gt,
                           alpha if match_alpha is None else match_alpha)
        rows, cols = threshold_matches(net.priors, gt, rows, cols, positive_iou)
        if len(rows):
            conf_target[b, rows] = 1.0
            if with_classes:
                class_target[b, rows, labels[b][cols].to(class_logits.device)] = 1.0
            prior_size = (net.priors[rows, 2:] - net.priors[rows, :2]).repeat(1, 2)
            loc_terms.append(0.5 * ((boxes[b, rows] - gt[cols]) / prior_size).pow(2).sum())
    # normalized by the number of matched predictions (as SSD does), not by images: with
    # threshold positives an image of 30 cells has ten times the terms of an image of 3
    num_matched = max(1.0, float(conf_target.sum()))
    conf = nn.functional.binary_cross_entropy_with_logits(logits, conf_target, reduction="sum") / num_matched
    loc = (torch.stack(loc_terms).sum() if loc_terms else logits.sum() * 0) / num_matched
    cls = (nn.functional.binary_cross_entropy_with_logits(class_logits, class_target, reduction="sum") / num_matched
           if with_classes else torch.zeros(()))
    return alpha * loc + conf + cls, loc.detach(), conf.detach(), cls.detach()


# ------------------------------------------------------------------------- data
def prepare_image(image_rgb: np.ndarray, size: int) -> torch.Tensor:
    """uint8 HxWx3 -> normalized (3, size, size) float tensor (aspect not kept: the
    boxes are normalized, so stretching is undone when they are mapped back)."""
    import cv2

    from networks.transforms import to_tensor
    return to_tensor(cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_LINEAR))


class MultiBoxData(torch.utils.data.Dataset):
    def __init__(self, dataset, size: int, flip: bool):
        self.records, self.size, self.flip = dataset.images, size, flip

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        from core.images import read_image
        rec = self.records[i]
        image = read_image(rec.path)
        boxes = rec.boxes / [rec.width, rec.height, rec.width, rec.height]
        if self.flip and torch.rand(()) < 0.5:
            image = image[:, ::-1]
            boxes = np.column_stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]])
        return (prepare_image(np.ascontiguousarray(image), self.size), torch.as_tensor(boxes, dtype=torch.float32),
                torch.as_tensor(rec.labels, dtype=torch.int64))


def _collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


# ------------------------------------------------------------------------- train / load / run
def train_multibox(dataset, cfg, out_dir: str, device="cpu", resume: bool = True, max_steps: int | None = None,
                   progress: bool = True, hooks=()) -> str:
    """Train MultiBox on ``dataset`` into ``out_dir`` (``multibox.pt`` + ``multibox.json``).

    A checkpoint is written each epoch; with ``resume`` a killed run continues from it.
    ``max_steps`` stops early (tests). Returns the model path.
    """
    from core import distributed
    from networks.engine import Trainer, seed_everything
    os.makedirs(out_dir, exist_ok=True)
    world = distributed.world_size()
    if cfg.batch_size % world:
        raise UserError(f"proposals.multibox.batch_size ({cfg.batch_size}) is the global batch: it must be a "
                        f"multiple of the number of processes ({world})")
    generator = seed_everything(cfg.seed)
    device = torch.device(device)
    grid = grid_size(cfg.input_size, cfg.stride)
    shapes = kmeans_shapes(normalized_boxes(dataset), shapes_per_cell(cfg.num_boxes, cfg.input_size, cfg.stride),
                           cfg.seed)
    classes = list(dataset.classes) if cfg.class_confidences else []
    net = MultiBoxNet(shapes, grid, cfg.width, cfg.batch_norm, cfg.stride, len(classes)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    # from random initialization the first steps' location gradients are huge: clip them
    trainer = Trainer(net, opt, out_dir=out_dir, epochs=cfg.epochs, lr=cfg.lr, lr_steps=cfg.lr_steps,
                      lr_gamma=cfg.lr_gamma, warmup_iters=cfg.warmup_iters, clip_grad=10.0, name="multibox",
                      device=device, progress=progress, max_steps=max_steps,
                      extra_state=lambda: {"generator": generator.get_state()},
                      load_extra_state=lambda state: generator.set_state(state["generator"]), hooks=hooks,
                      channels_last=cfg.channels_last)
    done = os.path.join(out_dir, "multibox.pt")
    if resume and trainer.resume() and trainer.finished and os.path.exists(done):
        return done                    # finished: keep the exported weights (and their cache key)
    data = MultiBoxData(dataset, cfg.input_size, flip=True)
    sampler = None
    if distributed.active():
        # each rank takes batch_size / N images of every global batch (DistributedSampler
        # shuffles with the seed and the epoch, the same on every rank)
        from torch.utils.data.distributed import DistributedSampler
        sampler = DistributedSampler(data, seed=cfg.seed, drop_last=True)
        loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size // world, sampler=sampler,
                                             collate_fn=_collate)
    else:
        loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, collate_fn=_collate,
                                             generator=generator, drop_last=False)

    def batches(epoch):
        if sampler is not None:
            sampler.set_epoch(epoch)
        return loader

    def step(model, batch):
        images, gts, labels = batch
        offsets, logits, class_logits = model(images.to(device))
        loss, loc, conf, cls = multibox_loss(net, offsets, logits, [g.to(device) for g in gts], cfg.loc_weight,
                                             cfg.match_on, cfg.match_weight, cfg.positive_iou, class_logits, labels)
        loss.backward()
        logged = {"loss": loss.item(), "loc": loc.item(), "conf": conf.item(), "count": 1}
        return {**logged, "class": cls.item()} if classes else logged

    history = trainer.fit(batches, step)
    path = export_multibox(net, cfg, out_dir, history, classes) if distributed.is_main() else None
    distributed.barrier()
    return path or os.path.join(out_dir, "multibox.pt")


def export_multibox(net, cfg, out_dir, history, classes=()) -> str:
    from core.fileio import write_json
    from networks.engine import save_checkpoint
    path = os.path.join(out_dir, "multibox.pt")
    save_checkpoint(path, {k: (v.half() if v.is_floating_point() and k not in ("priors", "shapes") else v).contiguous()
                           for k, v in net.state_dict().items()})       # (NCHW also after NHWC training)
    write_json(os.path.join(out_dir, "multibox.json"),
               {"num_boxes": len(net.priors), "grid": net.grid, "input_size": cfg.input_size, "width": cfg.width,
                "batch_norm": cfg.batch_norm, "stride": cfg.stride, "classes": list(classes), "history": history})
    return path


_LOADED: dict[tuple, tuple[MultiBoxNet, int]] = {}


def load_multibox(model_dir: str, device="cpu") -> tuple[MultiBoxNet, int]:
    """(network in eval mode, input size) from a directory written by train_multibox.

    Loaded once per process (until the file changes): the proposal generator and the
    objectness scorer then hold the same network, and multibox_predictions does not run
    it twice on the same image."""
    weights = os.path.join(model_dir, "multibox.pt")
    try:
        stat = os.stat(weights)
    except OSError:
        return _load_multibox(model_dir, device)     # says what is missing
    key = (os.path.realpath(weights), stat.st_mtime_ns, stat.st_size, str(device))
    if key not in _LOADED:
        _LOADED[key] = _load_multibox(model_dir, device)
    return _LOADED[key]


def _load_multibox(model_dir: str, device) -> tuple[MultiBoxNet, int]:
    from networks.engine import load_checkpoint
    from networks.transforms import for_inference
    meta_path = os.path.join(model_dir, "multibox.json")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"{meta_path}: not a MultiBox model ({exc})") from None
    state = load_checkpoint(os.path.join(model_dir, "multibox.pt"))
    try:
        net = MultiBoxNet(state["shapes"].numpy(), meta["grid"], meta["width"], meta["batch_norm"],
                          meta.get("stride", 32), len(meta.get("classes", ())))
        net.classes = list(meta.get("classes", ()))
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except (KeyError, RuntimeError) as exc:      # e.g. a model from an older layout
        raise UserError(f"{model_dir}/multibox.pt does not fit its multibox.json ({str(exc)[:200]}); "
                        "retrain it with train.py --stage multibox") from None
    return for_inference(net, device), int(meta["input_size"])


@torch.no_grad()
def multibox_proposals(net: MultiBoxNet, input_size: int, images_rgb: list[np.ndarray], top_k: int,
                       device="cpu", nms_iou: float = 1.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-k (boxes in pixels, objectness) per image, best first; with ``nms_iou`` < 1,
    after non-maximum suppression (neighbouring priors find the same object)."""
    from torchvision.ops import nms
    out = []
    for px, scores, _ in multibox_predictions(net, input_size, images_rgb, device):
        order = (nms(px, scores, nms_iou) if nms_iou < 1 else torch.argsort(scores, descending=True))[:top_k]
        out.append((px[order].cpu().numpy(), scores[order].cpu().numpy()))
    return out


@torch.no_grad()
def multibox_predictions(net: MultiBoxNet, input_size: int, images_rgb: list[np.ndarray], device="cpu"):
    """Every prior's prediction per image, in prior order: (boxes ``(K, 4)`` float32 in
    pixels, objectness ``(K,)``, class confidences ``(K, C)``; C = 0 without them).
    A single image that is the very array of the net's previous single-image call is
    answered from that call (proposals, then objectness, on the fast path)."""
    last = getattr(net, "last_single_image", None)
    if len(images_rgb) == 1 and last is not None and last[0] is images_rgb[0] and last[1] == input_size:
        return last[2]
    batch = torch.stack([prepare_image(im, input_size) for im in images_rgb]).to(device)
    offsets, logits, class_logits = net(batch)
    boxes = net.boxes(offsets)
    out = []
    for b, im in enumerate(images_rgb):
        h, w = im.shape[:2]
        corners = boxes[b].clamp(0, 1).view(-1, 2, 2)                 # an inverted box is put right
        px = torch.cat([corners.min(1).values, corners.max(1).values], 1) * torch.tensor(
            [w, h, w, h], device=boxes.device, dtype=boxes.dtype)
        out.append((px.float(), torch.sigmoid(logits[b]).float(), torch.sigmoid(class_logits[b]).float()))
    net.last_single_image = (images_rgb[0], input_size, out) if len(images_rgb) == 1 else None
    return out
