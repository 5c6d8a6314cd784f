"""The on-disk layout of model and ensemble directories, read without loading a network.

A model directory holds config.yaml, model.pt, heads.npz, manifest.json and (when its
proposals use MultiBox) multibox/. An ensemble directory holds ``ensemble.json``::

    {"members": ["member-0", "member-1", ...], "weights": [1, 1, ...], "vote": "soft"}

whose members are model directories (relative to it, or absolute). An optional
``"multibox": "member-0/multibox"`` names the MultiBox whose boxes every member scores,
for members trained independently, each on its own MultiBox (without it the members'
own MultiBox must be one and the same).
"""
from __future__ import annotations

import json
import os

from .errors import UserError

ENSEMBLE_FILE = "ensemble.json"


def is_ensemble(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ENSEMBLE_FILE))


def read_ensemble_spec(path: str) -> dict:
    spec_path = os.path.join(path, ENSEMBLE_FILE)
    try:
        with open(spec_path) as f:
            spec = json.load(f)
        spec["dirs"] = [m if os.path.isabs(m) else os.path.join(path, m) for m in spec["members"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{spec_path}: not a valid ensemble manifest ({exc})") from None
    if not spec["dirs"]:
        raise UserError(f"{spec_path}: lists no members")
    missing = [d for d in spec["dirs"] if not os.path.isdir(d)]
    if missing:
        raise UserError(f"{spec_path}: member {os.path.normpath(missing[0])}: no such model directory")
    if spec.get("weights") is not None and len(spec["weights"]) != len(spec["dirs"]):
        raise UserError(f"{spec_path}: {len(spec['weights'])} weights for {len(spec['dirs'])} members")
    if spec.get("multibox"):
        mb = spec["multibox"]
        spec["multibox_dir"] = mb if os.path.isabs(mb) else os.path.join(path, mb)
        if not os.path.isfile(os.path.join(spec["multibox_dir"], "multibox.pt")):
            raise UserError(f"{spec_path}: multibox {os.path.normpath(spec['multibox_dir'])}: no multibox.pt there")
    return spec


def member_dirs(path: str) -> list[str]:
    """The model directories behind a model or ensemble path."""
    if not os.path.isdir(path):
        raise UserError(f"{path}: no such model directory")
    return read_ensemble_spec(path)["dirs"] if is_ensemble(path) else [path]


def member_names(dirs: list[str]) -> list[str]:
    """A name per member directory: its folder name, or, where two share one (``a/member-0``,
    ``b/member-0``), the shortest trailing part of the path that tells them apart."""
    parts = [os.path.normpath(d).split(os.sep) for d in dirs]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        names = [os.sep.join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            break
    return names


def model_config(path: str):
    """The (first member's) config of a model or ensemble, without loading weights."""
    from .config import load_config
    config = os.path.join(member_dirs(path)[0], "config.yaml")
    if not os.path.exists(config):
        raise UserError(f"{path}: not a model directory (no config.yaml)")
    return load_config(config)


def model_classes(path: str) -> list[str]:
    """Classes of a model or ensemble, read from its config without loading weights."""
    return list(model_config(path).data.classes or [])


def _sha1(path: str) -> str:
    import hashlib
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# Network options added after fingerprints were: at their default they are left out of
# the signature, so a model directory written before they existed still loads.
LATER_MODEL_KEYS = ("roi_context", "fine_features", "region_grid", "box_geometry", "image_context")


def weights_signature(cfg, keep: tuple = ()) -> str:
    """What the weights are only valid with: the class list and the network's settings
    (proposal and test settings may be changed deliberately). ``keep``: later keys to
    hash even at their default (how the code hashed them before they joined the list)."""
    import dataclasses
    import hashlib
    model, default = dataclasses.asdict(cfg.model), dataclasses.asdict(type(cfg.model)())
    for key in LATER_MODEL_KEYS:
        if key in model and key not in keep and model[key] == default.get(key):
            del model[key]
    return hashlib.sha1(json.dumps({"classes": cfg.data.classes, "model": model},
                                   sort_keys=True).encode()).hexdigest()[:16]


def accepted_signatures(cfg) -> set[str]:
    """Every signature these weights may have been written with: a later key at its
    default was hashed by the code between its arrival and its joining LATER_MODEL_KEYS
    (region_grid, 2026-11-27: the leave-one-out runs of that night), and a default does
    not change the network, so any of them may have been kept."""
    import itertools
    return {weights_signature(cfg, keep) for n in range(len(LATER_MODEL_KEYS) + 1)
            for keep in itertools.combinations(LATER_MODEL_KEYS, n)}


def fingerprint(model_dir: str, cfg) -> dict:
    """Hashes of a model directory's weights and of the config they need (manifest.json)."""
    return {"model.pt": _sha1(os.path.join(model_dir, "model.pt")),
            "heads.npz": _sha1(os.path.join(model_dir, "heads.npz")), "config": weights_signature(cfg)}


def check_fingerprint(model_dir: str, cfg) -> None:
    """A model directory whose files do not belong together is an error naming the file.
    Directories written before fingerprints existed (no ``fingerprint`` in the manifest)
    are trusted."""
    path = os.path.join(model_dir, "manifest.json")
    try:
        with open(path) as f:
            expected = json.load(f).get("fingerprint")
    except FileNotFoundError:
        return
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: not a readable manifest ({exc})") from None
    if not expected:
        return
    if expected.get("config") not in accepted_signatures(cfg):
        raise UserError(f"{model_dir}/config.yaml: its classes or network settings are not the ones "
                        f"{model_dir}/model.pt was trained with (fingerprint in manifest.json)")
    for name in ("model.pt", "heads.npz"):
        if name in expected and expected[name] != _sha1(os.path.join(model_dir, name)):
            raise UserError(f"{model_dir}/{name}: not the file this model directory was written with "
                            f"(fingerprint in manifest.json)")


def classifier_seconds(manifest: dict) -> float:
    """A model's classifier training seconds from its manifest.json: train.py writes a
    number, or {"multibox": s, "classifier": s} when MultiBox trained in the same run (and
    a bundled single model keeps that form)."""
    t = manifest.get("training_seconds", 0.0)
    return float(t.get("classifier", 0.0)) if isinstance(t, dict) else float(t)
