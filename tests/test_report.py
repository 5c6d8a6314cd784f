"""evaluate.py --report: the page, its numbers, and how a real browser shows it."""
import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

MINI = ROOT / "examples" / "bccd_mini"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import sys
    out = tmp_path_factory.mktemp("report")
    r = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "--dataset", str(MINI), "--split", "test",
                        "--detections", str(MINI / "example_detections.json"), "--report", str(out / "page"),
                        "--json", str(out / "r.json")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out


def test_report_page_and_json_carry_the_same_numbers(report):
    result = json.loads((report / "r.json").read_text())
    page = (report / "page" / "index.html").read_text()
    assert f"<b id='map'>{result['mAP']:.4f}</b>" in page
    conf = result["confusion"]
    assert conf["classes"] == ["Platelets", "RBC", "WBC", "background"]
    matrix = conf["matrix"]
    fp = result["false_positives"]
    # every detection above the threshold is either correct or one kind of false positive,
    # and lands in exactly one cell of the matrix's detected-as columns
    dets = json.loads((MINI / "example_detections.json").read_text())
    above = sum(d["score"] >= 0.3 for d in dets)
    kinds = ("true_positives", "duplicate", "mislocalized", "other class", "background")
    assert sum(fp[c][k] for c in fp for k in kinds) == above
    assert sum(matrix[r][c] for r in range(4) for c in range(3)) == above
    for name in ("pr_curves.png", "worst_00.jpg"):
        assert (report / "page" / name).stat().st_size > 1000
    assert "src='pr_curves.png'" in page and "src='worst_00.jpg'" in page


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(not _chromium(), reason="no Chromium here (.ci/run installs Debian's chromium)")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    page = report / "page" / "index.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    result = json.loads((report / "r.json").read_text())
    assert re.search(rf'id="map">{result["mAP"]:.4f}<', dom), dom[:500]
    assert dom.count("<img") >= 2 and 'id="confusion"' in dom and 'id="false-positives"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, "--window-size=1100,1400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image
    im = Image.open(shot).convert("L")
    assert im.size == (1100, 1400)
    hist = im.histogram()
    assert hist[255] < 0.97 * sum(hist)          # not a blank page: text, tables and figures are drawn
