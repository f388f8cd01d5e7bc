"""State files: writers sharing one state directory never trip over each other."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from fleetd.config.statefiles import write_json_atomically


def test_concurrent_writers_of_one_file_all_succeed_and_leave_one_whole_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "state" / "http.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(200):
                write_json_atomically(target, {"writer": n, "i": i})
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(target.read_text())["i"] == 199
    assert [p.name for p in target.parent.iterdir()] == ["http.json"]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "http.json"
    target.mkdir()  # a directory where the file should go: the rename fails
    try:
        write_json_atomically(target, {"urls": []})
    except OSError:
        pass
    else:
        raise AssertionError("a file was renamed over a directory")
    assert [p.name for p in tmp_path.iterdir()] == ["http.json"]
    assert target.is_dir()
