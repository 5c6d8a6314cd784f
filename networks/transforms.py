"""Images and regions as the networks take them: normalized tensors, rescaled images,
warped crops, and the channels-last layout used at inference."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.ops import roi_align

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


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
