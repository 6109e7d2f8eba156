"""RowCache: decoded rows in front of a table, write-through, bounded, emptied on demand."""
import pytest

from stream.tables import RowCache


class _Table:
    """What RowCache needs of a ChangelogTable: one-lookup reads, writes, its caches."""

    def __init__(self):
        self.data, self.reads, self._caches = {}, 0, []

    def read(self, key):
        self.reads += 1
        return self.data.get(key)

    def write(self, key, value):
        if value == b"refused":
            raise TypeError("the table refuses this value")
        self.data[key] = value


def _cache(size=2):
    table = _Table()
    return table, RowCache(table, lambda v: v.decode(), lambda r: r.encode(), size)


def test_rows_are_read_once_then_served_decoded():
    table, cache = _cache()
    table.data[b"a"] = b"1"
    assert cache.get(b"a") == "1" and cache.get(b"a") == "1"
    assert table.reads == 1
    assert cache.get(b"missing") is None and cache.get(b"missing") is None
    assert table.reads == 3  # absent rows are not cached


def test_writes_go_to_the_table_before_the_cache():
    table, cache = _cache()
    cache.set(b"a", "2")
    assert table.data[b"a"] == b"2" and cache.get(b"a") == "2" and table.reads == 0
    with pytest.raises(TypeError):
        cache.set(b"a", "refused")
    assert cache.get(b"a") == "2"  # the failed write left the cache as the table


def test_the_least_recently_used_row_goes_first():
    table, cache = _cache(size=2)
    for key in (b"a", b"b"):
        cache.set(key, key.decode())
    cache.get(b"a")  # b is now the least recently used
    cache.set(b"c", "c")
    table.data[b"b"] = b"changed behind the cache"
    assert cache.get(b"a") == "a" and cache.get(b"b") == "changed behind the cache"


def test_clear_forgets_every_row():
    table, cache = _cache()
    cache.set(b"a", "1")
    table.data[b"a"] = b"recovered"
    cache.clear()
    assert cache.get(b"a") == "recovered"
    assert table._caches == [cache]
