"""Every shipped recipe parses into the config dataclasses."""
import pytest

from conftest import ROOT
from core.config import Config, config_from_dict, load_config


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_parses(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, Config) and (cfg.data.dataset or path.name == "default.yaml")
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


def test_dataset_recipes_are_the_default_plus_overrides(tmp_path):
    import dataclasses
    bccd, default = load_config(str(ROOT / "configs" / "bccd.yaml")), load_config(str(ROOT / "configs" / "default.yaml"))
    assert bccd.proposals.selective_search.max_side == 400 and default.proposals.selective_search.max_side == 500
    assert bccd.proposals.selective_search.k_scale == default.proposals.selective_search.k_scale == 2.0
    # the model is the default's but for the width its bundled model was trained at
    assert dataclasses.asdict(bccd.model) == dataclasses.asdict(default.model) | {"width": 0.5}
    assert default.model.width == 0.25
    # a recipe of one's own: base + one key; the base's other keys stay
    (tmp_path / "mine.yaml").write_text(f"base: {ROOT / 'configs' / 'default.yaml'}\ntrain: {{epochs: 3}}\n")
    mine = load_config(str(tmp_path / "mine.yaml"))
    assert mine.train.epochs == 3 and mine.train.lr_steps == default.train.lr_steps
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    from core.errors import UserError
    with pytest.raises(UserError, match="refer to each other in a circle"):
        load_config(str(tmp_path / "loop.yaml"))
