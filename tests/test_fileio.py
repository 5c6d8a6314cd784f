import os
import stat

import pytest

from core.fileio import atomic_write, write_json


def test_atomic_write_keeps_the_old_file_on_failure_and_uses_the_usual_mode(tmp_path):
    path = tmp_path / "result.json"
    write_json(str(path), {"a": 1})
    old_mask = os.umask(0o022)
    try:
        write_json(str(path), {"a": 2})
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":2}'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]          # no temp file left
