"""Every shipped recipe parses into the config dataclasses."""
import pytest

from conftest import ROOT
from core.config import Config, config_from_dict, load_config


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_parses(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, Config) and cfg.data.dataset
    assert cfg.proposals.method in ("ss", "multibox", "combined")


def test_paper_recipe_is_the_paper_setting():
    cfg = load_config(str(ROOT / "configs" / "ilsvrc14_googlenet.yaml"))
    assert cfg.model.region_mode == "warp" and cfg.model.input_size == 224 and cfg.model.arch == "googlenet"
    assert cfg.data.format == "ilsvrc" and cfg.proposals.multibox_top_k == 200


def test_types_are_checked():
    from core.errors import UserError
    with pytest.raises(UserError, match="train.epochs must be int"):
        config_from_dict({"train": {"epochs": "ten"}})
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
