"""A built wheel works without the checkout: console scripts, bundled model, example image."""
import os
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT


@pytest.mark.skipif(not (ROOT / "models" / "bccd").is_dir(), reason="no bundled model in this checkout")
def test_wheel_installs_and_detect_runs_on_the_bundled_example(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("googlenet_detector-*.whl"))
    prefix = tmp_path / "prefix"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--prefix", str(prefix),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    site = sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)})
    assert not os.path.exists(os.path.join(site, "detect.py"))          # no generic top-level modules
    image = prefix / "share" / "googlenet-detector" / "examples" / "bccd_mini" / "BloodImage_00007.jpg"
    assert image.exists()
    env = dict(os.environ, PYTHONPATH=site)
    work = tmp_path / "elsewhere"                                        # not the checkout: nothing found by accident
    work.mkdir()
    out = subprocess.run([str(prefix / "bin" / "detect"), str(image), "--proposals", "multibox", "--json", "d.json",
                          "--no-images"], capture_output=True, text=True, timeout=600, cwd=work, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "share/googlenet-detector/models/bccd" in out.stdout and (work / "d.json").stat().st_size > 100
