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

import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_align

from .googlenet import STRIDE, build_googlenet

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
SHARED_STOP = "4e"


def to_tensor(image_rgb: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 HxWx3 -> normalized float (3, H, W)."""
    if not (image_rgb.flags.writeable and image_rgb.flags.c_contiguous):
        image_rgb = np.array(image_rgb)        # PIL hands out read-only arrays
    t = torch.from_numpy(image_rgb).to(device).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGE_MEAN, device=device).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=device).view(3, 1, 1)
    return (t - mean) / std


def for_inference(net: nn.Module, device) -> nn.Module:
    """Eval mode on ``device``, weights in channels-last layout: oneDNN's CPU convolutions
    are faster that way (bench/bench_region_cost.py) and the outputs are the same."""
    return net.to(device, memory_format=torch.channels_last).eval()


def shared_scale(height: int, width: int, short_side: int, max_side: int) -> float:
    """Resize factor: shorter side to ``short_side``, longer side at most ``max_side``."""
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_side:
        scale = max_side / max(height, width)
    return scale


def resize_tensor(image: torch.Tensor, scale: float) -> torch.Tensor:
    if abs(scale - 1.0) < 1e-6:
        return image
    h, w = image.shape[-2:]
    size = (max(16, round(h * scale)), max(16, round(w * scale)))
    return nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                                     antialias=scale < 1)[0]


def context_boxes(boxes: torch.Tensor, input_size: int, context_pad: int) -> torch.Tensor:
    """Dilate boxes so that, warped to input_size, context_pad pixels surround the box."""
    factor = input_size / max(1, input_size - 2 * context_pad)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1) / 2 * factor
    return torch.cat([centre - half, centre + half], 1)


def warp_regions(image: torch.Tensor, boxes: torch.Tensor, input_size: int, context_pad: int) -> torch.Tensor:
    """(R, 3, S, S) warped crops of a (3, H, W) normalized image (outside = mean colour)."""
    return roi_align(image[None], [context_boxes(boxes, input_size, context_pad)], output_size=input_size,
                     spatial_scale=1.0, sampling_ratio=2, aligned=True)


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
