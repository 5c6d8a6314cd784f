"""One config object, read from ``configs/*.yaml``: plain nested dataclasses.

Every field has a default, so a recipe names only what differs. An unknown key or a
value of the wrong type is an error naming the file and the key. A model directory saves
the resolved config (``config.yaml``) so that it runs without the recipe.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field

from .errors import UserError


@dataclass
class DataConfig:
    dataset: str = ""                  # dataset root (VOC / ILSVRC DET / COCO layout)
    format: str = "auto"
    train_split: str = "train"
    val_split: str = "val"             # model selection (train.eval_every); never the test split
    test_split: str = "test"           # what the bundled figures are measured on
    classes: list[str] | None = None   # None: from the data (sorted)
    synsets: str | None = None         # ILSVRC synset map


@dataclass
class SelectiveSearchConfig:
    mode: str = "fast"                 # fast | quality (opencv-contrib's strategies)
    base_k: int = 150                  # graph-segmentation scale (opencv's default)
    k_scale: float = 2.0               # GoogLeNet: scale doubled -> coarser superpixels
    inc_k: int = 150
    sigma: float = 0.8
    max_side: int = 500                # larger images are shrunk first; boxes mapped back
    min_size: int = 8                  # smallest box side kept (pixels, original image)
    top_n: int = 2000                  # first N in selective-search order


@dataclass
class MultiBoxConfig:
    num_boxes: int = 200               # K: priors, predictions per image (>= 200)
    input_size: int = 320              # the image is resized to this square
    width: float = 0.5                 # GoogLeNet trunk channel multiplier
    batch_norm: bool = True
    loc_weight: float = 2.0            # alpha: location vs confidence in the loss
    match_weight: float = 10.0         # alpha in the matching cost (location must dominate there)
    match_on: str = "prior"            # prior: stable assignment; prediction: Erhan et al.
    positive_iou: float = 0.5          # priors this close to an object are positives too (0: bipartite only)
    stride: int = 32                   # prior grid cell, in input pixels (16: the 4e map's resolution)
    class_confidences: bool = False    # also a confidence per class and prior (class-aware test.objectness)
    epochs: int = 60
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: list[int] = field(default_factory=lambda: [40, 52])
    lr_gamma: float = 0.1
    warmup_iters: int = 0
    seed: int = 0
    channels_last: bool = False        # train in the NHWC layout: the network step 1.22x faster on the CPU at
                                       # one thread, other sums (False: how every run before 2026-12-07
                                       # trained, so they repeat)


@dataclass
class ProposalConfig:
    method: str = "combined"           # ss | multibox | combined
    multibox_top_k: int = 200          # MultiBox boxes added (combined) or used (multibox)
    multibox_nms: float = 0.7          # NMS among MultiBox boxes before the top k (1: none)
    duplicate_iou: float = 0.9         # near-duplicates removed in combined
    multibox_model: str = ""           # MultiBox model dir (relative to the model dir)
    selective_search: SelectiveSearchConfig = field(default_factory=SelectiveSearchConfig)
    multibox: MultiBoxConfig = field(default_factory=MultiBoxConfig)


@dataclass
class ModelConfig:
    arch: str = "googlenet"            # googlenet (paper-exact) | torchvision
    batch_norm: bool = True            # after every conv (the paper had none)
    width: float = 1.0                 # channel multiplier (1.0 = the paper's widths)
    aux_classifiers: bool = True       # on 4a and 4d, training only
    init: str = "random"               # random | imagenet | path/to/weights.pth
    region_mode: str = "shared"        # warp (R-CNN) | shared (roi_align on a feature map)
    input_size: int = 224              # warp: region size
    context_pad: int = 16              # warp: context pixels at the warped size
    image_scale: int = 480             # shared: shorter image side
    max_image_side: int = 1000         # shared: cap on the longer side
    roi_size: int = 14                 # shared: roi_align output on the 4e map
    roi_sampling: int = 2              # shared: bilinear samples per bin side (1 is 4x cheaper)
    roi_context: int = 0               # shared: bins of context around each region's roi_size window
                                       # (R-CNN's context_pad, counted in window bins)
    fine_features: bool = False        # shared: cut regions at stride 8 from 4e upsampled + a 1x1
                                       # projection of 3b (a top-down merge, for small objects)
    region_grid: int = 1               # a region's feature: 5b average-pooled to g x g cells, concatenated.
                                       # 1 is the paper's global average; 2 keeps where in the box a part is
                                       # (BCCD screening 0.884 against 0.891: not adopted, docs/ablation.md)
    bbox_regressor: str = "ridge"      # ridge: R-CNN's regressors fitted on frozen features after
                                       # training; joint: Fast R-CNN's layer trained with the classifier
    box_geometry: bool = False         # shared: where a region lies (its distance to each image border,
                                       # its size against the image's) joins the softmax: the window alone
                                       # does not show where the image ends, and annotators leave cut-off
                                       # objects out (detector/region_classifier.py, box_geometry)
    image_context: bool = False        # shared: the whole image's 4e features, averaged, add a per-class bias
                                       # to every region's logits: what annotators box can depend on the
                                       # image, not only on the region (detector/region_classifier.py)


@dataclass
class TrainConfig:
    epochs: int = 30
    images_per_batch: int = 2
    rois_per_image: int = 64
    fg_fraction: float = 0.25
    class_balanced: bool = False       # foreground drawn with an equal share per class present
    fg_iou: float = 0.5
    bg_iou_low: float = 0.1
    easy_bg_fraction: float = 0.0      # share of the background drawn from regions under bg_iou_low (R-CNN
                                       # never shows them: BCCD's unannotated cells, cut at the border);
                                       # 0 is R-CNN's sampling, configs/default.yaml has 0.5
    partial_annotation: float = 0.0    # > 0: a class boxed in at least this share of the training images is
                                       # taken to be in all of them; an image that boxes other objects but
                                       # none of it trains no background (its unboxed objects would)
    label_smoothing: float = 0.0       # > 0: softmax targets put this share on the other classes (Szegedy
                                       # et al. 2016), so annotation slips (cells left unboxed) are not memorised
    self_distill: float = 0.0          # > 0: from the second epoch, this share of the softmax loss takes the
                                       # Polyak-averaged weights' class probabilities of each region as its
                                       # target instead of the label (no teacher to train; one more forward
                                       # without gradient: 1.4x the step on BCCD)
    teacher: str = ""                  # a trained model or ensemble directory: from the first epoch,
                                       # teacher_share of the softmax loss takes its class probabilities of
                                       # each region as the target (distilling its vote into this network)
    teacher_share: float = 0.5
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_steps: list[int] = field(default_factory=lambda: [20, 26])
    lr_gamma: float = 0.1
    warmup_iters: int = 100
    ema_decay: float = 0.999           # Polyak averaging for the test weights (ramped up; 0: off)
    aux_weight: float = 0.3
    flip: bool = True
    scale_jitter: list[int] = field(default_factory=lambda: [400, 448, 480, 512, 560])
    seed: int = 0
    svm: bool = False                  # R-CNN stage: per-class linear SVMs
    svm_C: float = 0.001
    bbox_regression: bool = True       # regress boxes (how: model.bbox_regressor)
    bbox_iou: float = 0.6              # ridge: proposals this close to a gt train the regressors
    bbox_loss_weight: float = 1.0      # joint: smooth-L1 box loss weight beside the softmax loss
    ohem_pool: int = 0                 # > rois_per_image: score this many sampled regions, train on the
                                       # rois_per_image hardest (online hard-example mining)
    gt_jitter: int = 0                 # jittered copies of every gt box added to an image's proposals
    random_crop: float = 0.0           # > 0: half the images cropped to a random [this, 1] of each side
    color_jitter: float = 0.0          # photometric jitter strength (brightness, contrast, saturation)
    num_threads: int = 0               # 0: torch default
    eval_every: int = 0                # validation mAP every N epochs, best epoch kept (0: off)
    early_stop: int = 0                # stop after N validations without improvement (0: never)
    validation_images: int = 60        # at most this many validate (a selection signal, not the score);
                                       # a val split's other images train
    validation_seed: int | None = None  # which images validate (None: train.seed's); one seed for all members
                                       # of an ensemble leaves the same images held out by every one of them
    channels_last: bool = False        # train in the NHWC layout: a training step 1.17x faster on the CPU at one
                                       # thread (bench/train_layout_ab.sh), other sums (False: how every run
                                       # before 2026-12-07 trained, so they repeat)


@dataclass
class TestConfig:
    score_threshold: float = 0.05
    nms_iou: float = 0.3
    max_per_image: int = 100
    batch_regions: int = 256           # regions per network batch (warp mode)
    flip_vote: bool = False            # also score the mirrored image and average (2x network time)
    box_vote: float = 0.0              # > 0: each kept box becomes the score-weighted mean of the boxes
                                       # of its class overlapping it by this IoU (0: off)
    soft_nms: float = 0.0              # > 0: Gaussian Soft-NMS with this sigma instead of NMS at nms_iou
    scales: list[int] = field(default_factory=list)   # shared mode: score at these shorter sides and average
                                       # (multi-scale testing; network time x len); empty: model.image_scale
    objectness: float = 0.0            # > 0: a detection's score becomes score^(1-w) x objectness^w, its MultiBox
                                       # objectness averaged over the members' MultiBoxes (proposals/objectness.py);
                                       # 0: the paper's classifier-only score
    objectness_iou: float = 0.5        # a MultiBox prediction vouches for a box it overlaps by this IoU
    refine: int = 0                    # > 0: iterative localization, this many more passes: the regressed boxes are
                                       # scored again and NMS picks from every pass's boxes (network time x1+n)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


CHOICES = {
    ("proposals", "method"): ("ss", "multibox", "combined"),
    ("selective_search", "mode"): ("fast", "quality"),
    ("multibox", "match_on"): ("prior", "prediction"),
    ("model", "arch"): ("googlenet", "torchvision"),
    ("model", "region_mode"): ("warp", "shared"),
    ("model", "bbox_regressor"): ("ridge", "joint"),
}


# Keys that older model directories carry but nothing reads any more: dropped on load.
RETIRED_KEYS = {("train", "bbox_ridge_alpha")}   # RidgeCV picks the alpha


def _build(cls, values: dict, where: str, source: str):
    if not isinstance(values, dict):
        raise UserError(f"{source}: '{where}' must be a mapping, got {values!r}")
    values = {k: v for k, v in values.items() if (where, k) not in RETIRED_KEYS}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise UserError(f"{source}: unknown key(s) {sorted(unknown)} in '{where}' "
                        f"(known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in values.items():
        hint, key = hints[name], f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, key, source)
            continue
        kwargs[name] = _check(hint, value, key, source)
        choices = CHOICES.get((where.split(".")[-1], name))
        if choices and value not in choices:
            raise UserError(f"{source}: {key} = {value!r}; choose from {', '.join(choices)}")
    return cls(**kwargs)


def _check(hint, value, key, source):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    base = next((a for a in args if a is not type(None)), hint) if args and origin is not list else hint
    if typing.get_origin(base) is list or base is list:
        if not isinstance(value, list):
            raise UserError(f"{source}: {key} must be a list, got {value!r}")
        element = (typing.get_args(base) or (None,))[0]
        if element is not None:
            return [_check(element, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return list(value)
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is float and isinstance(value, str):    # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if base in (int, str, bool) and type(value) is base:
        return value
    raise UserError(f"{source}: {key} must be {getattr(base, '__name__', base)}, got {value!r}")


# (section, key): (lowest, highest, whether the lowest is allowed); None = unbounded
RANGES = {
    ("train", "epochs"): (1, None, True), ("train", "lr"): (0, None, False),
    ("train", "images_per_batch"): (1, None, True), ("train", "rois_per_image"): (1, None, True),
    ("train", "fg_fraction"): (0, 1, False), ("train", "momentum"): (0, 1, True),
    ("train", "weight_decay"): (0, None, True), ("train", "lr_gamma"): (0, 1, False),
    ("train", "warmup_iters"): (0, None, True), ("train", "ema_decay"): (0, 1, True),
    ("train", "aux_weight"): (0, None, True), ("train", "bbox_loss_weight"): (0, None, True),
    ("train", "gt_jitter"): (0, None, True), ("train", "ohem_pool"): (0, None, True), ("train", "color_jitter"): (0, 1, True),
    ("train", "random_crop"): (0, 1, True),
    ("train", "easy_bg_fraction"): (0, 1, True), ("train", "partial_annotation"): (0, 1, True),
    ("train", "label_smoothing"): (0, 1, True), ("train", "self_distill"): (0, 1, True),
    ("train", "teacher_share"): (0, 1, True),
    ("train", "eval_every"): (0, None, True), ("train", "early_stop"): (0, None, True),
    ("train", "validation_images"): (1, None, True),
    ("train", "seed"): (0, None, True), ("train", "validation_seed"): (0, None, True),   # numpy's generators
    ("multibox", "seed"): (0, None, True),                                              # take no negative seed
    ("train", "lr_steps"): (0, None, True), ("train", "scale_jitter"): (1, None, True),
    ("multibox", "epochs"): (1, None, True), ("multibox", "lr"): (0, None, False),
    ("multibox", "batch_size"): (1, None, True), ("multibox", "num_boxes"): (1, None, True),
    ("multibox", "input_size"): (16, None, True), ("multibox", "stride"): (1, None, True),
    ("multibox", "width"): (0, None, False), ("multibox", "lr_steps"): (0, None, True),
    ("model", "width"): (0, None, False), ("model", "image_scale"): (16, None, True),
    ("model", "max_image_side"): (16, None, True), ("model", "roi_size"): (1, None, True),
    ("model", "roi_sampling"): (0, None, True), ("model", "input_size"): (16, None, True),
    ("model", "roi_context"): (0, None, True), ("model", "context_pad"): (0, None, True),
    ("model", "region_grid"): (1, None, True),
    ("test", "score_threshold"): (0, 1, True), ("test", "nms_iou"): (0, 1, True), ("test", "box_vote"): (0, 1, True),
    ("test", "soft_nms"): (0, None, True), ("test", "scales"): (16, None, True),
    ("test", "objectness"): (0, 1, True), ("test", "objectness_iou"): (0, 1, False),
    ("test", "max_per_image"): (1, None, True), ("test", "batch_regions"): (1, None, True),
    ("test", "refine"): (0, None, True),
    ("proposals", "multibox_top_k"): (1, None, True),
    ("selective_search", "max_side"): (0, None, True), ("selective_search", "top_n"): (1, None, True),
}


def _validate(cfg: Config, source: str) -> None:
    """Ranges (one line naming the key), and class names that are unique."""
    sections = {"train": cfg.train, "multibox": cfg.proposals.multibox, "model": cfg.model, "test": cfg.test,
                "proposals": cfg.proposals, "selective_search": cfg.proposals.selective_search}
    for (section, key), (low, high, low_ok) in RANGES.items():
        value = getattr(sections[section], key)
        where = "proposals.multibox" if section == "multibox" else (
            "proposals.selective_search" if section == "selective_search" else section)
        for v in value if isinstance(value, list) else [value]:
            if v is None:                          # an optional key left unset
                continue
            if (low is not None and (v < low or (v == low and not low_ok))) or (high is not None and v > high):
                bound = (f">= {low}" if low_ok else f"> {low}") + (f" and <= {high}" if high is not None else "")
                raise UserError(f"{source}: {where}.{key} = {value!r}; it must be {bound}")
    for pad, size, name in ((cfg.model.roi_context, cfg.model.roi_size, "roi_context"),
                            (cfg.model.context_pad, cfg.model.input_size, "context_pad")):
        if 2 * pad >= size:
            raise UserError(f"{source}: model.{name} = {pad}; it must be less than half of "
                            f"model.{'roi_size' if name == 'roi_context' else 'input_size'} ({size})")
    if cfg.train.teacher and cfg.train.self_distill:
        raise UserError(f"{source}: train.teacher and train.self_distill both name a teacher; set one of them")
    if cfg.model.image_context and cfg.model.region_mode != "shared":
        raise UserError(f"{source}: model.image_context needs model.region_mode: shared (the warp mode "
                        f"never runs the network on the whole image)")
    if cfg.model.box_geometry and cfg.model.region_mode != "shared":
        raise UserError(f"{source}: model.box_geometry needs model.region_mode: shared (the warp mode "
                        f"sees crops, not where they lie in the image)")
    classes = cfg.data.classes or []
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise UserError(f"{source}: data.classes names {', '.join(map(repr, twice))} more than once")


def config_from_dict(values: dict, source: str = "<config>") -> Config:
    cfg = _build(Config, values or {}, "", source)
    _validate(cfg, source)
    return cfg


def _read_yaml(path: str, seen: tuple = ()) -> dict:
    """A recipe's values, with ``base: other.yaml`` (relative to the recipe) merged
    under them: a dataset recipe is the default recipe plus a few overrides."""
    import yaml
    if os.path.abspath(path) in seen:
        raise UserError(f"{path}: 'base' recipes refer to each other in a circle")
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: a recipe is a mapping of sections, got {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise UserError(f"{path}: base must be a file name, got {base!r}")
    merged = _read_yaml(os.path.join(os.path.dirname(os.path.abspath(path)), base), seen + (os.path.abspath(path),))
    _merge(merged, values)
    return merged


def _merge(into: dict, values: dict) -> None:
    for k, v in values.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def set_dotted(values: dict, overrides: dict) -> dict:
    """``{"train.epochs": 12}`` written into the nested ``values`` (in place; returned)."""
    for dotted, value in overrides.items():
        node = values
        *parents, last = dotted.split(".")
        for depth, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):      # train.lr.x=1: lr is a value, not a section
                raise UserError(f"--set: {'.'.join(parents[:depth + 1])} is a value, not a section ({dotted})")
        node[last] = value
    return values


def load_config(path: str, overrides: dict | None = None) -> Config:
    """The recipe at ``path`` with ``--set`` overrides. The file is checked alone first, so
    an error says whether the file or the override holds the bad value."""
    values = _read_yaml(path)
    if not overrides:
        return config_from_dict(values, path)
    config_from_dict(copy.deepcopy(values), path)
    return config_from_dict(set_dotted(values, overrides), "--set")


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.epochs=12", "model.image_scale=600"]`` -> ``{"train.epochs": 12, ...}``.
    Values are read as YAML, so numbers, booleans and ``[a, b]`` lists keep their types."""
    import yaml
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=12")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    return out


def override_test_settings(cfg: Config, overrides: dict) -> None:
    """Apply ``{"test.key": value}`` (from ``--set``) to a trained model's config: only
    the test section can change once the network is trained."""
    other = sorted(k for k in overrides if not k.startswith("test."))
    if other:
        raise UserError(f"--set {other[0]}: only test.* keys can change at test time")
    merged = dataclasses.asdict(cfg.test)
    merged.update({k[len("test."):]: v for k, v in overrides.items()})
    cfg.test = _build(TestConfig, merged, "test", "--set")
    _validate(cfg, "--set")             # the ranges, as for a recipe (test.nms_iou=5 is a mistake)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str) -> None:
    import yaml

    from .fileio import atomic_write
    with atomic_write(path) as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
