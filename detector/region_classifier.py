"""Feeding regions to GoogLeNet, the two ways the config offers.

* ``warp`` (R-CNN): each proposal, dilated to carry ``context_pad`` pixels of context at
  the warped size, is warped to ``input_size`` x ``input_size`` and run through the
  whole network. The warp is torchvision's roi_align on the image itself (bilinear, one
  batched call).
* ``shared`` (fast): the trunk runs once per image up to inception 4e (stride 16);
  roi_align cuts every proposal's ``roi_size`` x ``roi_size`` window out of that map,
  and pool4, inception 5a/5b and the heads run per region. The auxiliary classifiers
  read roi_align windows of the 4a and 4d maps the same way.

Either way a region ends as the 1024-d (times width) average-pooled feature that the
softmax classifier, the bounding-box regressors and the optional SVMs all read. With
``bbox_regressor: joint`` a linear layer on that feature predicts class-specific box
deltas and trains with the classifier (Fast R-CNN's multi-task loss); with ``ridge``
the regressors are fitted afterwards on the frozen features (R-CNN, ``heads.py``).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

from networks.googlenet import STRIDE, build_googlenet
from networks.transforms import resize_tensor, shared_scale, warp_regions

SHARED_STOP = "4e"


class RegionClassifier(nn.Module):
    def __init__(self, model_cfg, num_classes: int):
        super().__init__()
        self.cfg = model_cfg
        self.num_classes = num_classes
        self.net = build_googlenet(model_cfg.arch, num_classes + 1, model_cfg.batch_norm, model_cfg.width,
                                   model_cfg.aux_classifiers, model_cfg.init)
        self.bbox_pred = None
        if model_cfg.bbox_regressor == "joint":
            # Fast R-CNN: small initial weights, so early deltas are ~0 and boxes stay put
            self.bbox_pred = nn.Linear(self.net.feature_dim, 4 * num_classes)
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.zeros_(self.bbox_pred.bias)

    def box_deltas(self, feats: torch.Tensor) -> torch.Tensor | None:
        """(R, C, 4) class-specific deltas (BBOX_WEIGHTS-scaled) from the joint layer; None without it."""
        if self.bbox_pred is None:
            return None
        return self.bbox_pred(feats).view(len(feats), self.num_classes, 4)

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim

    def _aux_taps(self):
        return ("4a", "4d") if self.training and self.net.aux is not None else ()

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None):
        """Training entry (DistributedDataParallel hooks into ``forward``): warped crops
        ``(R, 3, S, S)``, or one image ``(3, H, W)`` and its boxes in shared mode."""
        return self.forward_warp(images) if boxes is None else self.forward_shared(images, boxes)

    def forward_warp(self, crops: torch.Tensor):
        x, tapped = self.net.run(crops, taps=self._aux_taps())
        return self._outputs(self.net.pool(x), [self.net.aux[k](tapped[k]) for k in tapped])

    def _outputs(self, feats: torch.Tensor, aux: list):
        """(features (R, D), logits (R, C+1), deltas (R, C, 4) or None, aux logits)."""
        return feats, self.net.head(feats), self.box_deltas(feats), aux

    def forward_shared(self, image: torch.Tensor, boxes: torch.Tensor):
        """image (3, H, W) already at the network scale; boxes (R, 4) in its pixels."""
        x, tapped = self.net.run(image[None], stop=SHARED_STOP, taps=self._aux_taps())
        size = self.cfg.roi_size

        def cut(fmap, stage):
            return roi_align(fmap, [boxes], output_size=size, spatial_scale=1.0 / STRIDE[stage],
                             sampling_ratio=self.cfg.roi_sampling, aligned=True)
        y, _ = self.net.run(cut(x, SHARED_STOP), start=SHARED_STOP)
        return self._outputs(self.net.pool(y), [self.net.aux[k](cut(tapped[k], k)) for k in tapped])

    def regions(self, image: torch.Tensor, boxes: torch.Tensor, batch: int = 256):
        """(features, logits, deltas or None, aux logits) for boxes in the *original* image's pixels.

        ``image``: normalized (3, H, W) at original size. Warp mode runs regions in
        chunks of ``batch``; shared mode resizes the image once and runs all regions.
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
        scale = shared_scale(h, w, self.cfg.image_scale, self.cfg.max_image_side)
        return self.forward_shared(resize_tensor(image, scale), boxes * scale)
