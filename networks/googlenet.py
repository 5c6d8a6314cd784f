"""GoogLeNet (Inception v1) as Table 1 of Szegedy et al. 2014 describes it.

``arch="googlenet"`` is the paper's network: 7x7/2 stem, 1x1 reduce + 3x3, inception
3a-5b with the table's widths and *5x5* convolutions in the 5x5 branch, global average
pooling, dropout 0.4, linear; auxiliary classifiers on 4a and 4d (5x5/3 average pool,
1x1 conv with 128 filters, fc 1024, dropout 0.7, linear). Batch norm after each
convolution is a switch (the paper had none and used local response normalization in
the stem, which this keeps when batch norm is off).

``arch="torchvision"`` wraps torchvision's ``googlenet``: the one with downloadable
ImageNet weights, but its "5x5" branch is a 3x3 convolution and it always has batch norm.

Both expose the same stages, so the detector and MultiBox can run the trunk up to any
inception block (``features``) and the rest from there (``run``).
"""
from __future__ import annotations

import torch
from torch import nn

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_WIDTHS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# The order of stages; "pool3" after 3b and "pool4" after 4e halve the resolution.
STAGES = ["stem", "3a", "3b", "pool3", "4a", "4b", "4c", "4d", "4e", "pool4", "5a", "5b"]
STRIDE = {"stem": 8, "3a": 8, "3b": 8, "pool3": 16, "4a": 16, "4b": 16, "4c": 16, "4d": 16,
          "4e": 16, "pool4": 32, "5a": 32, "5b": 32}


def _c(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


def out_channels(stage: str, width: float = 1.0) -> int:
    """Channels a stage outputs (the concatenation of its four branches)."""
    if stage == "stem":
        return _c(192, width)
    if stage.startswith("pool"):
        stage = "3b" if stage == "pool3" else "4e"
    w = INCEPTION_WIDTHS[stage]
    return _c(w[0], width) + _c(w[2], width) + _c(w[4], width) + _c(w[5], width)


class ConvReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride=1, padding=0, batch_norm=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout, eps=1e-3))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Inception(nn.Module):
    def __init__(self, cin, n1, n3r, n3, n5r, n5, npool, batch_norm=True):
        super().__init__()
        self.branch1 = ConvReLU(cin, n1, 1, batch_norm=batch_norm)
        self.branch3 = nn.Sequential(ConvReLU(cin, n3r, 1, batch_norm=batch_norm),
                                     ConvReLU(n3r, n3, 3, padding=1, batch_norm=batch_norm))
        self.branch5 = nn.Sequential(ConvReLU(cin, n5r, 1, batch_norm=batch_norm),
                                     ConvReLU(n5r, n5, 5, padding=2, batch_norm=batch_norm))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                         ConvReLU(cin, npool, 1, batch_norm=batch_norm))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


class AuxClassifier(nn.Module):
    """5x5/3 average pool, 1x1 conv (128), fc 1024, dropout 0.7, linear."""

    def __init__(self, cin, num_outputs, width=1.0, batch_norm=True):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)      # = 5x5/3 on the 14x14 map, any size here
        self.conv = ConvReLU(cin, _c(128, width), 1, batch_norm=batch_norm)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(_c(128, width) * 16, _c(1024, width)),
                                nn.ReLU(inplace=True), nn.Dropout(0.7))
        self.classifier = nn.Linear(_c(1024, width), num_outputs)

    def forward(self, x):
        return self.classifier(self.fc(self.conv(self.pool(x))))


class GoogLeNet(nn.Module):
    """Stages in ``self.stages`` (see STAGES); ``head`` pools, drops out, classifies."""

    def __init__(self, num_outputs=1000, batch_norm=True, width=1.0, aux_classifiers=True):
        super().__init__()
        bn = batch_norm
        stem = [ConvReLU(3, _c(64, width), 7, 2, 3, bn), nn.MaxPool2d(3, 2, ceil_mode=True)]
        if not bn:
            stem.append(nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0))
        stem += [ConvReLU(_c(64, width), _c(64, width), 1, batch_norm=bn),
                 ConvReLU(_c(64, width), _c(192, width), 3, padding=1, batch_norm=bn)]
        if not bn:
            stem.append(nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0))
        stem.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        stages = {"stem": nn.Sequential(*stem)}
        cin = _c(192, width)
        for name in STAGES[1:]:
            if name.startswith("pool"):
                stages[name] = nn.MaxPool2d(3, 2, ceil_mode=True)
                continue
            w = [_c(v, width) for v in INCEPTION_WIDTHS[name]]
            stages[name] = Inception(cin, *w, batch_norm=bn)
            cin = out_channels(name, width)
        self.stages = nn.ModuleDict(stages)
        self.feature_dim = cin
        self.dropout = nn.Dropout(0.4)
        self.classifier = nn.Linear(cin, num_outputs)
        self.aux = nn.ModuleDict({
            "4a": AuxClassifier(out_channels("4a", width), num_outputs, width, bn),
            "4d": AuxClassifier(out_channels("4d", width), num_outputs, width, bn),
        }) if aux_classifiers else None
        self._init_weights()

    def _init_weights(self):
        # He init for convolutions (trains from scratch with or without batch norm);
        # small linear layers so that the first logits, main and auxiliary, are near 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- staged execution -----------------------------------------------------------
    def run(self, x, start: str | None = None, stop: str = "5b", taps=()):
        """Run stages after ``start`` (None: from the image) up to and including
        ``stop``; returns (output, {tap: activation})."""
        names = STAGES[STAGES.index(start) + 1 if start else 0:STAGES.index(stop) + 1]
        tapped = {}
        for name in names:
            x = self.stages[name](x)
            if name in taps:
                tapped[name] = x
        return x, tapped

    def pool(self, x):
        """Global average pool to the feature vector the heads read."""
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def head(self, features):
        return self.classifier(self.dropout(features))

    def forward(self, x):
        taps = ("4a", "4d") if self.aux is not None and self.training else ()
        x, tapped = self.run(x, taps=taps)
        logits = self.head(self.pool(x))
        if taps:
            return logits, [self.aux[k](tapped[k]) for k in taps]
        return logits


class TorchvisionGoogLeNet(GoogLeNet):
    """torchvision's googlenet behind the same stage interface."""

    def __init__(self, num_outputs=1000, aux_classifiers=True, weights=None):
        nn.Module.__init__(self)
        from torchvision.models import googlenet
        tv = googlenet(weights=weights, aux_logits=True, transform_input=False,
                       init_weights=weights is None)
        self.stages = nn.ModuleDict({
            "stem": nn.Sequential(tv.conv1, tv.maxpool1, tv.conv2, tv.conv3, tv.maxpool2),
            "3a": tv.inception3a, "3b": tv.inception3b, "pool3": tv.maxpool3,
            "4a": tv.inception4a, "4b": tv.inception4b, "4c": tv.inception4c,
            "4d": tv.inception4d, "4e": tv.inception4e, "pool4": tv.maxpool4,
            "5a": tv.inception5a, "5b": tv.inception5b,
        })
        self.feature_dim = 1024
        self.dropout = nn.Dropout(0.4)
        self.classifier = nn.Linear(1024, num_outputs)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        if aux_classifiers:
            for aux in (tv.aux1, tv.aux2):
                aux.fc2 = nn.Linear(aux.fc2.in_features, num_outputs)
            self.aux = nn.ModuleDict({"4a": tv.aux1, "4d": tv.aux2})
        else:
            self.aux = None


def build_googlenet(arch: str, num_outputs: int, batch_norm=True, width=1.0,
                    aux_classifiers=True, init: str = "random") -> GoogLeNet:
    """The network a config asks for. ``init``: ``random``, ``imagenet`` (torchvision's
    weights, downloaded where there is internet; arch torchvision only) or the path of
    a ``.pth`` state dict (loaded with weights_only=True; heads of another size skipped)."""
    from core.errors import UserError
    if arch == "torchvision":
        weights = None
        if init == "imagenet":
            from torchvision.models import GoogLeNet_Weights
            weights = GoogLeNet_Weights.IMAGENET1K_V1
        try:
            net = TorchvisionGoogLeNet(num_outputs, aux_classifiers, weights)
        except (OSError, RuntimeError) as exc:   # no internet: say so, not a traceback
            raise UserError(f"cannot load torchvision's ImageNet GoogLeNet weights ({exc}); "
                            "give a local .pth path as model.init instead") from None
    elif arch == "googlenet":
        if init == "imagenet":
            raise UserError("init: imagenet needs arch: torchvision (the paper-exact network "
                            "has no published weights); use a local .pth path or random")
        net = GoogLeNet(num_outputs, batch_norm, width, aux_classifiers)
    else:
        raise UserError(f"unknown arch {arch!r} (googlenet or torchvision)")
    if init not in ("random", "imagenet"):
        load_partial_state(net, init)
    return net


def load_partial_state(net: nn.Module, path: str) -> None:
    """Load a state dict, skipping tensors whose shapes differ (e.g. another class count)."""
    from core.errors import UserError
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: cannot load weights ({exc})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    own = net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise UserError(f"{path}: no tensor matches this network's layers")
    net.load_state_dict(usable, strict=False)
