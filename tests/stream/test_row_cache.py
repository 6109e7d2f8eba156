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


def test_peek_reads_as_get_does_and_leaves_the_cache_as_it_was():
    table, cache = _cache(size=2)
    cache.set(b"a", "1")
    cache.set(b"b", "2")
    table.data[b"c"] = b"3"
    assert cache.peek(b"c") == "3" and cache.peek(b"missing") is None
    table.data[b"c"] = b"changed"
    assert cache.peek(b"c") == "changed"  # not kept: read from the table again
    table.data[b"a"] = b"behind the cache"
    assert cache.peek(b"a") == "1"  # a cached row is what the agent reads
    cache.set(b"d", "4")  # a is still the least recently used: peeking did not touch it
    assert cache.get(b"a") == "behind the cache" and cache.get(b"b") == "2"
