"""Atomic writes, content hashes, URL expansion and retries of tasks/store.py."""

from __future__ import annotations

import pytest

from tasks import store


def test_atomic_dir_swaps_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "out"
    with store.atomic_dir(target) as d:
        (d / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError), store.atomic_dir(target) as d:
        (d / "a.txt").write_text("second")
        raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left behind


def test_atomic_write_leaves_no_temp_file(tmp_path):
    store.atomic_write_json(tmp_path / "m.json", {"x": 1})
    assert store.read_json(tmp_path / "m.json") == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_content_hash_tracks_content(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_text("1")
    h1 = store.content_hash(d)
    (d / "a").write_text("2")
    assert store.content_hash(d) != h1
    assert store.content_hash(tmp_path / "missing") == "missing"
    assert store.content_hash(d / "a") == store.file_md5(d / "a")


def test_expand_urls(tmp_path):
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / name).write_text("x")
    assert [p.rsplit("/", 1)[-1] for p in store.expand_urls(str(tmp_path / "*.csv"))] == ["a.csv", "b.csv"]
    with pytest.raises(FileNotFoundError, match=r"matches no file"):
        store.expand_urls(str(tmp_path / "*.parquet"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        store.expand_urls(str(tmp_path / "none.csv"))
    with pytest.raises(IsADirectoryError):
        store.expand_urls(str(tmp_path))


def test_retry_backs_off_then_names_what_failed():
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(OSError, match=r"reading x: failed after 3 tries: ConnectionError: refused"):
        store.retry(flaky, retries=2, delay_s=0.001, what="reading x")
    assert len(calls) == 3
    calls.clear()

    def missing():
        calls.append(1)
        raise FileNotFoundError("gone")

    with pytest.raises(FileNotFoundError):
        store.retry(missing, retries=5, delay_s=0.001, what="x")
    assert len(calls) == 1  # a missing file is not retried
