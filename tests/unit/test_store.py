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


# ----------------------------------------------------------------------------- atomic_path / fetch_to_cache
def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "x.parquet"
    with store.atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".parquet" and tmp != target
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), store.atomic_path(target) as tmp:
        tmp.write_text("second, half-written")
        raise RuntimeError("boom")
    assert target.read_text() == "first"  # the old file survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.parquet"]  # no temp file left


def test_atomic_path_replaces_a_folder(tmp_path):
    target = tmp_path / "store.zarr"
    for text in ("old", "new"):
        with store.atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text(text)
    assert (target / "a").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["store.zarr"]


def test_fetch_to_cache_returns_local_paths_and_copies_the_rest(tmp_path):
    import gzip

    src = tmp_path / "flows.csv"
    src.write_text("a,b\n1,2\n")
    cache = tmp_path / "cache"
    assert store.fetch_to_cache(str(src), cache) == src  # a local file is used where it is
    assert store.fetch_to_cache(f"file://{src}", cache) == src
    gz = tmp_path / "more.csv.gz"
    gz.write_bytes(gzip.compress(b"a,b\n3,4\n"))
    out = store.fetch_to_cache(str(gz), cache, gunzip=True)
    assert out == cache / "more.csv" and out.read_text() == "a,b\n3,4\n"
    # A remote file (fsspec's memory filesystem stands in for s3/http) is copied under its own name,
    # a second one with the same name gets a prefix, and ``name`` places it exactly.
    import fsspec

    with fsspec.open("memory://bucket/x/flows.csv", "wb") as f:
        f.write(b"remote")
    first = store.fetch_to_cache("memory://bucket/x/flows.csv", cache)
    second = store.fetch_to_cache("memory://bucket/x/flows.csv", cache)
    placed = store.fetch_to_cache("memory://bucket/x/flows.csv", cache, name="sub/r.csv")
    assert (first.name, second.name, placed) == ("flows.csv", "1-flows.csv", cache / "sub" / "r.csv")
    assert first.read_bytes() == second.read_bytes() == placed.read_bytes() == b"remote"
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]  # every copy went through a temp name


def test_fetch_to_cache_retries_transient_errors_only(tmp_path, monkeypatch):
    import fsspec

    sleeps: list[float] = []
    monkeypatch.setattr(store.time, "sleep", sleeps.append)
    with pytest.raises(FileNotFoundError):
        store.fetch_to_cache("memory://bucket/nowhere.csv", tmp_path, retries=3, delay_s=0.5)
    assert sleeps == [] and not list(tmp_path.iterdir())  # a missing file fails at once, leaves nothing

    with fsspec.open("memory://bucket/flaky.csv", "wb") as f:
        f.write(b"data")
    real_copy, failures = store.shutil.copyfileobj, [ConnectionError("reset by peer")]

    def flaky_copy(src, dst, length=0):
        if failures:
            dst.write(b"partial")
            raise failures.pop()
        return real_copy(src, dst, length)

    monkeypatch.setattr(store.shutil, "copyfileobj", flaky_copy)
    out = store.fetch_to_cache("memory://bucket/flaky.csv", tmp_path, retries=2, delay_s=0.5)
    assert out.read_bytes() == b"data" and sleeps == [0.5]  # one retry after the dropped connection
    assert [p.name for p in tmp_path.iterdir()] == ["flaky.csv"]  # the partial copy was never visible
