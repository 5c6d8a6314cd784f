"""Feeding regions to GoogLeNet, the two ways the config offers.

* ``warp`` (R-CNN): each proposal, dilated to carry ``context_pad`` pixels of context at
  the warped size, is warped to ``input_size`` x ``input_size`` and run through the
  whole network. The warp is torchvision's roi_align on the image itself (bilinear, one
  batched call).
* ``shared`` (fast): the trunk runs once per image up to inception 4e (stride 16);
  roi_align cuts every proposal's ``roi_size`` x ``roi_size`` window out of that map,
  and pool4, inception 5a/5b and the heads run per region. The auxiliary classifiers
  read roi_align windows of the 4a and 4d maps the same way. With ``fine_features``
  the windows come from a stride-8 map instead: 4e upsampled 2x plus a 1x1 projection
  of 3b (FPN's top-down merge), so a 30-px platelet spans ~4x4 cells, not ~2x2. With
  ``roi_context`` each window is dilated as R-CNN's ``context_pad`` dilates a warp: the
  classifier sees around the region, and beyond the image border (zeros), which is
  where annotators leave cut-off cells out.

Either way a region ends as the 1024-d (times width) average-pooled feature (with
``region_grid`` g > 1, g x g cell averages side by side: g*g times as long) that the
softmax classifier, the bounding-box regressors and the optional SVMs all read. With
``bbox_regressor: joint`` a linear layer on that feature predicts class-specific box
deltas and trains with the classifier (Fast R-CNN's multi-task loss); with ``ridge``
the regressors are fitted afterwards on the frozen features (R-CNN, ``heads.py``).

With ``box_geometry`` (shared mode) six numbers on where each region lies join the
softmax through a linear layer of their own, added to its logits: a window cut from the
feature map looks the same whether its edge is an object's or the image's, and datasets
such as BCCD leave objects cut by the image border unannotated.

With ``image_context`` (shared mode) the 4e map of the whole image, averaged, adds a
per-class bias to every region's logits through a zero-initialized linear layer: which
objects the annotators boxed can depend on the image (BCCD has images full of red cells
with none boxed), and the region's own window does not show that. MultiBox, which sees
the whole image, knows it (its objectness raised RBC +0.017 at test time).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from core.boxes import widths_heights
from networks.googlenet import STRIDE, build_googlenet, out_channels
from networks.transforms import context_boxes, resize_tensor, shared_scale, warp_regions

SHARED_STOP = "4e"
GEOMETRY_DIM = 6


def box_geometry(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(R, 6) for boxes (R, 4) in an image of ``height`` x ``width`` pixels: the distance
    to the left, top, right and bottom border in units of the box's own width or height,
    clipped to [0, 1] (0: the box touches that border), then log(box width / image width)
    and log(box height / image height). Unchanged by resizing the image with its boxes."""
    w, h = (side.clamp(min=1.0) for side in widths_heights(boxes))
    border = torch.stack([boxes[:, 0] / w, boxes[:, 1] / h, (width - boxes[:, 2]) / w, (height - boxes[:, 3]) / h], 1)
    return torch.cat([border.clamp(0.0, 1.0), torch.log(w / width)[:, None], torch.log(h / height)[:, None]], 1)


class RegionClassifier(nn.Module):
    def __init__(self, model_cfg, num_classes: int):
        super().__init__()
        self.cfg = model_cfg
        self.num_classes = num_classes
        self.net = build_googlenet(model_cfg.arch, num_classes + 1, model_cfg.batch_norm, model_cfg.width,
                                   model_cfg.aux_classifiers, model_cfg.init)
        self.grid = model_cfg.region_grid
        if self.grid > 1:
            # the softmax reads g*g cells of 5b instead of their average: a wider layer, the
            # network's own init (small weights, first logits near 0)
            self.net.classifier = nn.Linear(self.feature_dim, num_classes + 1)
            nn.init.normal_(self.net.classifier.weight, std=0.01)
            nn.init.zeros_(self.net.classifier.bias)
        self.bbox_pred = None
        if model_cfg.bbox_regressor == "joint":
            # Fast R-CNN: small initial weights, so early deltas are ~0 and boxes stay put
            self.bbox_pred = nn.Linear(self.feature_dim, 4 * num_classes)
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)
        self.lateral = None
        if model_cfg.region_mode == "shared" and model_cfg.fine_features:
            # zero weights: training starts from plain upsampled 4e and learns what 3b adds
            self.lateral = nn.Conv2d(out_channels("3b", model_cfg.width), out_channels(SHARED_STOP, model_cfg.width), 1)
            nn.init.zeros_(self.lateral.weight)
            nn.init.zeros_(self.lateral.bias)
        self.geometry = None
        if model_cfg.box_geometry:
            # zero weights: training starts from the paper's classifier and learns what position adds
            self.geometry = nn.Linear(GEOMETRY_DIM, num_classes + 1)
            nn.init.zeros_(self.geometry.weight)
            nn.init.zeros_(self.geometry.bias)
        self.context = None
        if model_cfg.image_context:
            # zero weights, created last (the other layers' initial draws stay as without it)
            self.context = nn.Linear(out_channels(SHARED_STOP, model_cfg.width), num_classes + 1)
            nn.init.zeros_(self.context.weight)
            nn.init.zeros_(self.context.bias)

    def box_deltas(self, feats: torch.Tensor) -> torch.Tensor | None:
        """(R, C, 4) class-specific deltas (BBOX_WEIGHTS-scaled) from the joint layer; None without it."""
        if self.bbox_pred is None:
            return None
        return self.bbox_pred(feats).view(len(feats), self.num_classes, 4)

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim * self.grid ** 2

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, h, w) 5b maps -> (R, feature_dim) region features: the global average, or
        with ``region_grid`` g the g x g cell averages, cell-major (C values per cell)."""
        if self.grid == 1:
            return self.net.pool(x)
        cells = nn.functional.adaptive_avg_pool2d(x, self.grid)          # (R, C, g, g)
        return cells.permute(0, 2, 3, 1).flatten(1)

    def _aux_taps(self):
        return ("4a", "4d") if self.training and self.net.aux is not None else ()

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None):
        """Training entry (DistributedDataParallel hooks into ``forward``): warped crops
        ``(R, 3, S, S)``, or one image ``(3, H, W)`` and its boxes in shared mode."""
        return self.forward_warp(images) if boxes is None else self.forward_shared(images, boxes)

    def forward_warp(self, crops: torch.Tensor):
        x, tapped = self.net.run(crops, taps=self._aux_taps())
        return self._outputs(self.pool(x), [self.net.aux[k](tapped[k]) for k in tapped])

    def _outputs(self, feats: torch.Tensor, aux: list, geometry: torch.Tensor | None = None,
                 context: torch.Tensor | None = None):
        """(features (R, D), logits (R, C+1), deltas (R, C, 4) or None, aux logits).
        ``geometry (R, GEOMETRY_DIM)``: box_geometry of the regions, read with ``box_geometry`` on;
        ``context (1, C_4e)``: the image's averaged 4e map, read with ``image_context`` on."""
        logits = self.net.head(feats)
        if self.geometry is not None:
            logits = logits + self.geometry(geometry)
        if self.context is not None:
            logits = logits + self.context(context)
        return feats, logits, self.box_deltas(feats), aux

    def forward_shared(self, image: torch.Tensor, boxes: torch.Tensor):
        """image (3, H, W) already at the network scale; boxes (R, 4) in its pixels."""
        aux_taps = self._aux_taps()
        x, tapped = self.net.run(image[None], stop=SHARED_STOP,
                                 taps=aux_taps + ("3b",) if self.lateral is not None else aux_taps)
        stride = STRIDE[SHARED_STOP]
        context = x.mean((2, 3)) if self.context is not None else None
        if self.lateral is not None:
            fine = tapped.pop("3b")
            x = nn.functional.interpolate(x, size=fine.shape[-2:], mode="nearest") + self.lateral(fine)
            stride = STRIDE["3b"]
        size = self.cfg.roi_size
        windows = context_boxes(boxes, size, self.cfg.roi_context) if self.cfg.roi_context else boxes

        def cut(fmap, fmap_stride):
            return roi_align(fmap, [windows], output_size=size, spatial_scale=1.0 / fmap_stride,
                             sampling_ratio=self.cfg.roi_sampling, aligned=True)
        y, _ = self.net.run(cut(x, stride), start=SHARED_STOP)
        geometry = box_geometry(boxes, *image.shape[-2:]) if self.geometry is not None else None
        return self._outputs(self.pool(y), [self.net.aux[k](cut(tapped[k], STRIDE[k])) for k in tapped], geometry,
                             context)

    def regions(self, image: torch.Tensor, boxes: torch.Tensor, batch: int = 256, short_side: int | None = None):
        """(features, logits, deltas or None, aux logits) for boxes in the *original* image's pixels.

        ``image``: normalized (3, H, W) at original size. Warp mode runs regions in
        chunks of ``batch``; shared mode resizes the image once (its shorter side to
        ``short_side``, default ``image_scale``; the longer side's cap ``max_image_side``
        grows with it) and runs all regions.
        """
        if self.cfg.region_mode == "warp":
            outs = [self.forward_warp(warp_regions(image, boxes[i:i + batch], self.cfg.input_size,
                                                   self.cfg.context_pad))
                    for i in range(0, len(boxes), batch)]
            if not outs:
                empty = torch.zeros(0, self.feature_dim, device=image.device)
                return self._outputs(empty, [])
            return (torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]),
                    None if outs[0][2] is None else torch.cat([o[2] for o in outs]),
                    [torch.cat([o[3][k] for o in outs]) for k in range(len(outs[0][3]))])
        h, w = image.shape[-2:]
        short_side = short_side or self.cfg.image_scale
        max_side = self.cfg.max_image_side * short_side / self.cfg.image_scale
        scale = shared_scale(h, w, short_side, max_side)
        return self.forward_shared(resize_tensor(image, scale), boxes * scale)
