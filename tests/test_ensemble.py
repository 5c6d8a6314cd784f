import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from core.errors import UserError
from ensemble import combine_deltas, combine_probs, load_predictor, write_ensemble

P1 = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])
P2 = np.array([[0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
P3 = np.array([[0.2, 0.5, 0.3], [0.5, 0.1, 0.4]])


def test_soft_vote_mean_and_weighted():
    np.testing.assert_allclose(combine_probs([P1, P2, P3]), (P1 + P2 + P3) / 3)
    np.testing.assert_allclose(combine_probs([P1, P2], weights=[3, 1]), 0.75 * P1 + 0.25 * P2)
    t = combine_probs([torch.tensor(P1), torch.tensor(P2)])
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), (P1 + P2) / 2)


def test_hard_vote_majority():
    # region 0: top classes 1, 2, 1 -> class 1 has 2/3 of the votes
    # region 1: top classes 0, 2, 0 -> background 2/3, class 2 1/3
    out = combine_probs([P1, P2, P3], vote="hard")
    np.testing.assert_allclose(out, np.array([[0, 2 / 3, 1 / 3], [2 / 3, 0, 1 / 3]]) + 1e-3 * (P1 + P2 + P3) / 3)
    # weights count as votes: member 2 alone outweighs the others
    out = combine_probs([P1, P2, P3], weights=[1, 3, 1], vote="hard")
    assert out[0].argmax() == 2 and out[1].argmax() == 2


def test_bad_weights_and_votes():
    with pytest.raises(UserError, match="non-negative"):
        combine_probs([P1, P2], weights=[-1, 1])
    with pytest.raises(UserError, match="vote must be"):
        combine_probs([P1, P2], vote="plurality")


def test_members_with_the_same_folder_name_keep_apart_names():
    from core.modeldir import member_names
    assert member_names(["runs/a/m0", "runs/a/m1"]) == ["m0", "m1"]
    # two bundles' member-0 in one ensemble: the shortest trailing path that differs
    assert member_names(["old/bccd/member-0", "models/bccd/member-0", "models/bccd/member-1"]) == [
        "old/bccd/member-0", "models/bccd/member-0", "models/bccd/member-1"]
    assert member_names(["x/member-0/", "y/member-0"]) == ["x/member-0", "y/member-0"]


def test_deltas_are_averaged():
    d1, d2 = np.ones((2, 2, 4)), 3 * np.ones((2, 2, 4))
    np.testing.assert_allclose(combine_deltas([d1, d2]), 2 * np.ones((2, 2, 4)))
    np.testing.assert_allclose(combine_deltas([d1, d2], [1, 3]), 2.5 * np.ones((2, 2, 4)))


@pytest.fixture(scope="module")
def two_members(tmp_path_factory, shapes_data):
    """Two independently seeded tiny members, trained with train.py --ensemble 2."""
    import subprocess
    import sys

    from conftest import ROOT
    from synthetic import tiny_config
    work = tmp_path_factory.mktemp("ens")
    cfg = tiny_config(work / "c.yaml", shapes_data, method="combined", epochs=1)
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(cfg), "--out", str(work / "ens"),
                        "--ensemble", "2", "--cache-dir", str(work / "cache"), "--no-progress", "--workers", "1"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return work


def test_ensemble_trains_detects_and_evaluates(two_members, shapes_data, run_script):
    ens = two_members / "ens"
    spec = json.loads((ens / "ensemble.json").read_text())
    assert spec["members"] == ["member-0", "member-1"] and spec["vote"] == "soft"
    a = torch.load(ens / "member-0" / "model.pt", weights_only=True)
    b = torch.load(ens / "member-1" / "model.pt", weights_only=True)
    assert not torch.equal(a["net.classifier.weight"], b["net.classifier.weight"])     # other seeds
    predictor = load_predictor(str(ens))
    assert len(predictor) == 2 and predictor.names == ["member-0", "member-1"]

    out = run_script("detect.py", shapes_data / "JPEGImages" / "shape_001.jpg", "--model", ens,
                     "--cache-dir", two_members / "cache", "--out", two_members / "o")
    assert out.returncode == 0, out.stderr
    out = run_script("evaluate.py", "--dataset", shapes_data, "--split", "test", "--model", ens, "--metric", "voc",
                     "--cache-dir", two_members / "cache", "--json", two_members / "r.json")
    assert out.returncode == 0, out.stderr
    header = [line for line in out.stdout.splitlines() if line.startswith("class")][0]
    assert header.split()[2:] == ["ensemble", "member-0", "member-1"]
    r = json.loads((two_members / "r.json").read_text())
    assert set(r["members"]) == {"member-0", "member-1"}
    assert all(0 <= m["mAP"] <= 1 for m in r["members"].values()) and 0 <= r["mAP"] <= 1


def test_proposals_computed_once_for_all_members(two_members, shapes_data):
    from core.images import read_image
    from pipeline.runner import DetectionRunner, proposals_for
    predictor = load_predictor(str(two_members / "ens"))
    runner = DetectionRunner(predictor, proposals_for(predictor, cache_dir=str(two_members / "cache")), progress=False)
    calls = []
    real = runner.proposals.propose
    runner.proposals.propose = lambda *a: calls.append(1) or real(*a)
    image_path = str(shapes_data / "JPEGImages" / "shape_002.jpg")
    results = runner.detect(read_image(image_path), "shape_002", members=True)
    assert len(calls) == 1 and set(results) == {"ensemble", "member-0", "member-1"}


def test_refine_scores_the_regressed_boxes_with_every_member_once_more(two_members, shapes_data):
    from core.images import read_image
    from pipeline.runner import DetectionRunner, proposals_for
    predictor = load_predictor(str(two_members / "ens"))
    proposals = proposals_for(predictor, cache_dir=str(two_members / "cache"))
    image = read_image(str(shapes_data / "JPEGImages" / "shape_002.jpg"))
    calls = []
    for m in predictor.members:
        real = m.score_regions
        m.score_regions = lambda img, boxes, real=real: calls.append(len(boxes)) or real(img, boxes)
    plain = DetectionRunner(predictor, proposals, progress=False).detect(image, "shape_002")["ensemble"]
    n = len(calls)
    predictor.cfg.test.refine = 1
    refined = DetectionRunner(predictor, proposals, progress=False).detect(image, "shape_002")["ensemble"]
    assert n == 2 and calls[n:] == calls[:n] * 2            # each member: the proposals, then as many moved boxes
    assert len(refined) > 0 and refined.scores.max() >= plain.scores.max() - 1e-6   # the first pass is still there
    assert (refined.boxes[:, 2] > refined.boxes[:, 0]).all()


def test_objectness_rescores_the_same_boxes_with_the_multibox_confidence(two_members, shapes_data):
    """``test.objectness`` w: the boxes and labels stay, each score becomes
    score^(1-w) x objectness^w with the objectness of its box, and the order follows."""
    from core.images import read_image
    from pipeline.runner import DetectionRunner, proposals_for
    from proposals.objectness import ObjectnessScorer
    predictor = load_predictor(str(two_members / "ens"))
    proposals = proposals_for(predictor, cache_dir=str(two_members / "cache"))
    image = read_image(str(shapes_data / "JPEGImages" / "shape_002.jpg"))
    plain = DetectionRunner(predictor, proposals, progress=False).detect(image, "shape_002")["ensemble"]
    assert len(plain) > 0
    assert predictor.objectness_multiboxes == [os.path.realpath(predictor.multibox_dir)]   # both members' one
    predictor.cfg.test.objectness = 0.5
    runner = DetectionRunner(predictor, proposals, progress=False)
    blended = runner.detect(image, "shape_002")["ensemble"]
    scorer = ObjectnessScorer(predictor.objectness_multiboxes, predictor.cfg.test.objectness_iou)
    objectness = scorer.score(scorer.predict(image), plain.boxes)
    assert 0 < objectness.max() <= 1
    expected = np.sqrt(plain.scores * objectness)
    order = np.argsort(-expected, kind="stable")
    np.testing.assert_allclose(blended.scores, expected[order], rtol=1e-5)
    np.testing.assert_array_equal(blended.boxes, plain.boxes[order])
    np.testing.assert_array_equal(blended.labels, plain.labels[order])
    assert runner.timing_report()["objectness"] > 0


def test_mismatched_members_are_refused(two_members, tmp_path):
    ens = two_members / "ens"
    other = tmp_path / "other"
    shutil.copytree(ens / "member-1", other, symlinks=False)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["data"]["classes"] = ["box", "circle"]
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    manifest = json.loads((other / "manifest.json").read_text())
    del manifest["fingerprint"]            # a model directory older than fingerprints: trusted as it is
    (other / "manifest.json").write_text(json.dumps(manifest))
    write_ensemble(str(tmp_path), [str(ens / "member-0"), str(other)])
    with pytest.raises(UserError, match="must share classes"):
        load_predictor(str(tmp_path))
    cfg["data"]["classes"] = ["box", "disc"]
    cfg["proposals"]["multibox_top_k"] = 7
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match=r"other proposal settings .*multibox_top_k"):
        load_predictor(str(tmp_path))


def test_create_cli_validates_members(two_members, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    ens = two_members / "ens"
    out = subprocess.run([sys.executable, "-m", "ensemble", "create", str(tmp_path / "e"), str(ens / "member-0"),
                          str(ens / "member-1"), "--vote", "hard"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    spec = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    assert spec["vote"] == "hard" and len(spec["members"]) == 2
    assert load_predictor(str(tmp_path / "e")).vote == "hard"
    out = subprocess.run([sys.executable, "-m", "ensemble", "create", str(tmp_path / "f"), str(ens / "member-0"),
                          str(tmp_path / "missing")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "no such model directory" in out.stderr
    assert not (tmp_path / "f" / "ensemble.json").exists()


def test_members_with_other_proposal_settings_are_refused_naming_values_and_fix(two_members, tmp_path):
    ens = two_members / "ens"
    other = tmp_path / "other"
    shutil.copytree(ens / "member-1", other, symlinks=False)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["proposals"]["multibox_top_k"] = 7
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))   # a test-time setting: the fingerprint allows it
    write_ensemble(str(tmp_path), [str(ens / "member-0"), str(other)])
    with pytest.raises(UserError, match=r"multibox_top_k: 20 in member-0, 7 in other\): members must score the same "
                                        r"proposals; set proposals.multibox_top_k alike"):
        load_predictor(str(tmp_path))


def test_bundling_an_ensemble_copies_members_from_anywhere_into_the_bundle(tmp_path):
    """A plan's ensemble lists its members beside it (``../row``): the bundle holds them as
    member-K with one shared MultiBox, and writes nothing outside itself."""
    import json
    import os

    from conftest import bench_script
    bundle = bench_script("bundle_models")
    (tmp_path / "mb").mkdir()
    for name in bundle.MULTIBOX_FILES:
        (tmp_path / "mb" / name).write_text(name)
    for row in ("row_a", "row_b"):
        (tmp_path / "plan" / row).mkdir(parents=True)
        for name in ("config.yaml", "model.pt", "heads.npz", "manifest.json"):
            (tmp_path / "plan" / row / name).write_text(f"{row} {name}")
        os.symlink("../../mb", tmp_path / "plan" / row / "multibox")
    (tmp_path / "plan" / "ens").mkdir()
    (tmp_path / "plan" / "ens" / "ensemble.json").write_text(json.dumps(
        {"members": ["../row_a", "../row_b"], "weights": [1.0, 2.0], "vote": "soft"}))
    before = sorted(os.listdir(tmp_path))
    names = bundle.copy_ensemble(str(tmp_path / "plan" / "ens"), str(tmp_path / "out" / "ens"))
    out = tmp_path / "out" / "ens"
    assert names == ["member-0", "member-1"] and sorted(os.listdir(tmp_path)) == sorted(before + ["out"])
    assert os.listdir(tmp_path / "out") == ["ens"]
    assert json.loads((out / "ensemble.json").read_text()) == {"members": names, "weights": [1.0, 2.0], "vote": "soft"}
    assert (out / "member-1" / "model.pt").read_text() == "row_b model.pt"
    assert os.readlink(out / "member-0" / "multibox") == os.path.join("..", "multibox")
    assert (out / "member-0" / "multibox" / "multibox.pt").read_text() == "multibox.pt"


def test_members_with_their_own_multibox_vote_on_the_one_the_ensemble_names(two_members, tmp_path):
    """Members trained separately, each with its own MultiBox, are refused as they are and
    accepted when the ensemble names the MultiBox they all score (``--multibox``)."""
    import subprocess
    import sys

    from conftest import ROOT
    ens = two_members / "ens"
    other = tmp_path / "other"
    shutil.copytree(ens / "member-1", other, symlinks=False)        # its own copy of the MultiBox...
    weights = torch.load(other / "multibox" / "multibox.pt", weights_only=True)
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 0.01                           # ...trained otherwise
    torch.save(weights, other / "multibox" / "multibox.pt")
    create = [sys.executable, "-m", "ensemble", "create", str(tmp_path / "e"), str(ens / "member-0"), str(other)]
    out = subprocess.run(create, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "multibox_model" in out.stderr and "--multibox DIR" in out.stderr
    assert not (tmp_path / "e" / "ensemble.json").exists()

    out = subprocess.run(create + ["--multibox", str(ens / "member-0" / "multibox")],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    spec = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    assert spec["multibox"] == os.path.relpath(ens / "member-0" / "multibox", tmp_path / "e")
    predictor = load_predictor(str(tmp_path / "e"))
    assert os.path.samefile(predictor.multibox_dir, ens / "member-0" / "multibox")
    assert os.path.samefile(predictor.members[1].multibox_dir, other / "multibox")   # not the one it scores
    # ...but the one whose objectness it brings (test.objectness): each member's own
    assert predictor.objectness_multiboxes == [os.path.realpath(ens / "member-0" / "multibox"),
                                               os.path.realpath(other / "multibox")]

    (tmp_path / "f").mkdir()
    write_ensemble(str(tmp_path / "f"), [str(ens / "member-0"), str(other)], multibox=str(tmp_path / "none"))
    with pytest.raises(UserError, match=r"multibox .*none: no multibox.pt there"):
        load_predictor(str(tmp_path / "f"))


def test_bundling_an_ensemble_that_names_its_multibox_bundles_that_one(tmp_path):
    """Members with their own MultiBox, voting on the one ensemble.json names: the bundle
    holds that one, linked from every member, and none of the members' own."""
    from conftest import bench_script
    bundle = bench_script("bundle_models")
    for row in ("row_a", "row_b"):
        (tmp_path / row / "multibox").mkdir(parents=True)
        for name in ("config.yaml", "model.pt", "heads.npz", "manifest.json"):
            (tmp_path / row / name).write_text(f"{row} {name}")
        for name in bundle.MULTIBOX_FILES:
            (tmp_path / row / "multibox" / name).write_text(f"{row} {name}")
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(
        {"members": ["../row_a", "../row_b"], "vote": "soft", "multibox": "../row_a/multibox"}))
    names = bundle.copy_ensemble(str(tmp_path / "ens"), str(tmp_path / "out"))
    out = tmp_path / "out"
    assert (out / "multibox" / "multibox.pt").read_text() == "row_a multibox.pt"
    for name in names:
        assert os.readlink(out / name / "multibox") == os.path.join("..", "multibox")
    assert "multibox" not in json.loads((out / "ensemble.json").read_text())
    # with test.objectness every member's own MultiBox is needed: row_b's is bundled beside
    # the shared one (row_a's own is that one: linked), and ensemble.json names the shared one
    names = bundle.copy_ensemble(str(tmp_path / "ens"), str(tmp_path / "obj"), member_multiboxes=True)
    out = tmp_path / "obj"
    assert os.readlink(out / "member-0" / "multibox") == os.path.join("..", "multibox")
    assert not os.path.islink(out / "member-1" / "multibox")
    assert (out / "member-1" / "multibox" / "multibox.pt").read_text() == "row_b multibox.pt"
    assert json.loads((out / "ensemble.json").read_text())["multibox"] == "multibox"


def test_same_weights_finds_a_bundle_identical_to_its_run_and_names_a_changed_tensor(two_members, tmp_path, capsys):
    """bench/same_weights.py, the README's check that train_bundled.sh retrains the bundle
    itself: the bundled copy of an ensemble is identical; one changed weight is found."""
    from conftest import bench_script
    bundle, same = bench_script("bundle_models"), bench_script("same_weights")
    ens = two_members / "ens"
    bundle.copy_ensemble(str(ens), str(tmp_path / "copy"))
    assert same.main([str(ens), str(tmp_path / "copy")]) == 0
    assert capsys.readouterr().out.count(": identical") == 5          # 2 x (model.pt, heads.npz) + MultiBox
    path = tmp_path / "copy" / "member-1" / "model.pt"
    weights = torch.load(path, weights_only=True)
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 0.5
    torch.save(weights, path)
    assert same.main([str(ens), str(tmp_path / "copy")]) == 1
    assert "member-1/model.pt: max |diff| 0.5" in capsys.readouterr().out
    with pytest.raises(UserError, match="not the same kind of model"):
        same.main([str(ens), str(ens / "member-0")])
    # a member's own MultiBox (test.objectness averages them) is compared too
    bundle.copy_ensemble(str(ens), str(tmp_path / "copy2"))
    for copy in ("copy", "copy2"):                       # member-1 gets a MultiBox of its own
        own = tmp_path / copy / "member-1" / "multibox"
        target = os.path.realpath(own)
        own.unlink()
        shutil.copytree(target, own)
    assert same.main([str(tmp_path / "copy"), str(tmp_path / "copy2")]) == 1     # member-1's model.pt still differs
    out = capsys.readouterr().out
    assert out.count(": identical") == 5 and "member-1/multibox/multibox.pt vs" in out
    mb = tmp_path / "copy2" / "member-1" / "multibox" / "multibox.pt"
    weights = torch.load(mb, weights_only=True)
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] - 0.25
    torch.save(weights, mb)
    same.main([str(tmp_path / "copy"), str(tmp_path / "copy2")])
    assert "member-1/multibox/multibox.pt: max |diff| 0.25" in capsys.readouterr().out


def test_held_out_images_are_those_every_member_validated_on(tmp_path):
    from conftest import bench_script
    held_out_images = bench_script("rescore_probe").held_out_images
    for name, ids in (("a", ["x", "y", "z"]), ("b", ["y", "z", "w"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"validation_images": ids}))
    assert held_out_images(str(tmp_path / "a")) == {"x", "y", "z"}
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps({"members": ["../a", "../b"]}))
    assert held_out_images(str(tmp_path / "ens")) == {"y", "z"}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="no list of held-out validation images"):
        held_out_images(str(tmp_path / "c"))
