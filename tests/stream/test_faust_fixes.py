"""The commit rule of stream.faust_fixes (change 3c): never past an offset not done."""
from collections import defaultdict
from types import SimpleNamespace

from faust.types.tuples import TP
from intervaltree import IntervalTree

from stream import faust_fixes

TP0 = TP("events", 0)


def _consumer(base, acked=(), gaps=()):
    consumer = SimpleNamespace(_acked=defaultdict(list), _acked_index=defaultdict(set),
                               _gap=defaultdict(IntervalTree),
                               _committed_offset=defaultdict(lambda: None))
    consumer._committed_offset[TP0] = base
    consumer._acked[TP0].extend(acked)
    consumer._acked_index[TP0].update(acked)
    for start, end in gaps:
        consumer._gap[TP0].addi(start, end + 1)
    return consumer


def _commit(consumer):
    return faust_fixes._new_offset(consumer, TP0)


def test_nothing_is_committed_before_the_partition_has_a_base():
    assert _commit(_consumer(None, [0, 1, 2])) is None


def test_the_run_must_start_at_the_base_even_when_the_base_is_zero():
    assert _commit(_consumer(0, [1, 2, 3])) is None  # offset 0 never done
    assert _commit(_consumer(0, [0, 1, 2, 5])) == 3


def test_a_hole_of_one_record_at_the_base_blocks_the_commit():
    assert _commit(_consumer(10, [11, 12])) is None
    consumer = _consumer(10, [10, 11, 13])
    assert _commit(consumer) == 12
    assert consumer._acked[TP0] == [13] and consumer._acked_index[TP0] == {13}


def test_offsets_that_do_not_exist_count_as_done():
    assert _commit(_consumer(10, [10, 12, 13], gaps=[(11, 11)])) == 14
    assert _commit(_consumer(10, [12], gaps=[(10, 11)])) == 13


def test_offsets_below_the_base_are_forgotten():
    consumer = _consumer(10, [8, 9, 10])
    assert _commit(consumer) == 11
    assert consumer._acked[TP0] == [] and not consumer._acked_index[TP0]


def test_install_refuses_other_versions(monkeypatch):
    monkeypatch.setattr(faust_fixes.faust, "__version__", "0.16.0")
    try:
        faust_fixes.install()
    except RuntimeError as exc:
        assert "0.15.3" in str(exc) and "0.16.0" in str(exc)
    else:
        raise AssertionError("install() patched an unknown faust-streaming version")


def test_every_change_below_faust_refuses_other_versions(monkeypatch):
    from stream import kafka_producer, tables

    monkeypatch.setattr(faust_fixes.aiokafka, "__version__", "0.15.0")
    for refuse in (kafka_producer.install, lambda: tables.changelog_table(None, "t")):
        try:
            refuse()
        except RuntimeError as exc:
            assert "0.14.0" in str(exc) and "0.15.0" in str(exc)
        else:
            raise AssertionError("installed on an unknown aiokafka version")
