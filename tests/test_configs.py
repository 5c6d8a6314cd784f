"""Every shipped recipe parses into the config dataclasses."""
import pytest

from conftest import ROOT, bench_script
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
    # the default draws half the background from regions overlapping no object; the recipes whose
    # models and ablation rows were trained before that keep R-CNN's sampling
    assert default.train.easy_bg_fraction == 0.5
    for old in ("configs/bccd.yaml", "configs/bccd_600.yaml", "configs/raccoon.yaml", "bench/recipes/bccd_w05.yaml",
                "bench/recipes/bccd_screening.yaml", "bench/recipes/raccoon_6ep.yaml"):
        assert load_config(str(ROOT / old)).train.easy_bg_fraction == 0.0, old
    # the model is the default's (width 0.25); the width-0.5 recipe of the previous models/bccd is kept
    assert dataclasses.asdict(bccd.model) == dataclasses.asdict(default.model) and default.model.width == 0.25
    w05 = load_config(str(ROOT / "bench" / "recipes" / "bccd_w05.yaml"))
    assert dataclasses.asdict(w05.model) == dataclasses.asdict(default.model) | {"width": 0.5}
    assert (w05.train.epochs, bccd.train.epochs) == (24, 36) and w05.test == bccd.test
    # the previous models/bccd's 600-px members: bccd.yaml with the scale and the stride-8 features only
    b600 = load_config(str(ROOT / "configs" / "bccd_600.yaml"))
    assert dataclasses.asdict(b600.model) == dataclasses.asdict(bccd.model) | {
        "image_scale": 600, "max_image_side": 800, "fine_features": True}
    assert dataclasses.asdict(b600.train) == dataclasses.asdict(bccd.train) | {"scale_jitter": [560, 600, 640]}
    assert b600.test == bccd.test and b600.proposals == bccd.proposals
    # a recipe of one's own: base + one key; the base's other keys stay
    (tmp_path / "mine.yaml").write_text(f"base: {ROOT / 'configs' / 'default.yaml'}\ntrain: {{epochs: 3}}\n")
    mine = load_config(str(tmp_path / "mine.yaml"))
    assert mine.train.epochs == 3 and mine.train.lr_steps == default.train.lr_steps
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    from core.errors import UserError
    with pytest.raises(UserError, match="refer to each other in a circle"):
        load_config(str(tmp_path / "loop.yaml"))


@pytest.mark.parametrize("path", sorted((ROOT / "bench" / "ablation").glob("*.yaml")), ids=lambda p: p.name)
def test_ablation_plans_parse_and_their_overrides_are_config_keys(path):
    from functools import reduce

    from core.config import parse_overrides
    ablation = bench_script("ablation")
    plan = ablation.load_plan(str(path))
    for row in plan["rows"]:
        overrides = parse_overrides((row.get("train") or []) + (row.get("test") or []))
        if overrides:                                # an unknown key or a bad value is a UserError
            cfg = load_config(str(ROOT / plan["recipe"]), overrides)
            for key, value in overrides.items():
                assert reduce(getattr, key.split("."), cfg) == value, (row["name"], key)


def test_ablation_table_keeps_the_minutes_of_rows_trained_elsewhere(tmp_path):
    """On a fresh clone a scored row's run directory is absent: its minutes come from the table."""
    ablation = bench_script("ablation")
    per_class = {"per_class": {"a": 0.5, "b": 0.25}, "mAP": 0.375, "seconds_per_image": {"network": 0.1}}
    rows = [({"name": "x", "train": ["train.epochs=3"]}, 12.5, per_class, per_class),
            ({"name": "y", "test": ["test.nms_iou=0.4"]}, None, per_class, per_class)]
    table = tmp_path / "plan.md"
    ablation.write_table({"name": "plan", "recipe": "r.yaml", "dataset": "d"}, rows, str(table))
    assert ablation.tabled_minutes(str(table)) == {"x": 12.5}
    assert ablation.training_minutes(str(tmp_path / "gone")) is None


def test_test_time_overrides_are_range_checked_like_a_recipe():
    """``evaluate.py --set test.KEY=VALUE`` on a trained model: a value out of range is the
    same one-line error a recipe gets, not a silently odd evaluation."""
    from core.config import Config, override_test_settings
    from core.errors import UserError
    cfg = Config()
    override_test_settings(cfg, {"test.objectness": 0.25, "test.nms_iou": 0.4})
    assert cfg.test.objectness == 0.25 and cfg.test.nms_iou == 0.4
    for key, value, bound in (("test.objectness", 1.5, ">= 0 and <= 1"), ("test.nms_iou", 5, ">= 0 and <= 1"),
                              ("test.objectness_iou", 0, "> 0 and <= 1")):
        with pytest.raises(UserError, match=rf"^--set: {key} = {value}\.?0?; it must be {bound}$"):
            override_test_settings(Config(), {key: value})
