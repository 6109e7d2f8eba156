"""Readers of data sets and event logs, on the reference data and on hand-written files."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from batch.readers import (FORMATS, REFERENCE_DATA_DIR, BadRowError, FormatError, ReadReport,
                           detect_format, iter_events, read_events, read_yoochoose)
from shared.events import DEFAULT_LIMITS, EVENT_TYPE_CODES, Event, EventLimits, encode_event

YOOCHOOSE_100K = REFERENCE_DATA_DIR / "yoochoose-100k"
CLICK, VIEW, ADD_TO_CART, BUY = (EVENT_TYPE_CODES[name]
                                 for name in ("click", "view", "add_to_cart", "buy"))

CLICKS = [
    b"1,2014-04-07T10:51:09.277Z,214536502,0",
    b"1,2014-04-07T10:54:09.868Z,214536500,0",
    b"2,2014-04-06T09:00:00.000Z,214662742,S",
    b"",
    b"2,2014-04-06T09:01:00.000Z,214662742,12",
    b"3,2014-04-06T09:02:00.000Z,214536500",               # bad_columns
    b",2014-04-06T09:02:00.000Z,214536500,0",              # empty_field
    b"4,2014-04-06 09:02:00,214536500,0",                  # bad_timestamp: no zone
    b"4,2014-13-06T09:02:00.000Z,214536500,0",             # bad_timestamp: month 13
    b"5,2014-04-06T09:03:00.000Z,\xff\xfe,0",              # not_utf8
    b"6,2014-04-06T09:03:00.000Z," + b"9" * 600 + b",0",   # oversized
    b"7,2014-04-06T09:04:00.000Z,214577561,2053203512\r",
]
CLICKS_BAD = {"bad_columns": 1, "empty_field": 1, "bad_timestamp": 2, "not_utf8": 1,
              "oversized": 1}
BUYS = [
    b"1,2014-04-07T10:55:00.000Z,214536502,3140,2",
    b"2,2014-04-06T09:05:00.000Z,214662742,0,0",
    b"8,2014-04-06T09:06:00.000Z,214600000,-5,1",          # bad_price
    b"8,2014-04-06T09:06:00.000Z,214600000,abc,1",         # bad_price
    b"8,2014-04-06T09:06:00.000Z,214600000,20000000,1",    # bad_price: above max_price
    b"8,2014-04-06T09:06:00.000Z,214600000,10,1.5",        # bad_quantity
    b"8,2014-04-06T09:06:00.000Z,214600000,10,10001",      # bad_quantity: above max_quantity
    b"9,2014-04-06T09:07:00.000Z,214600001,10.5,1",
]
RETAILROCKET = [
    b"timestamp,visitorid,event,itemid,transactionid",
    b"1433221332117,257597,view,355908,",
    b"1433224214164,992329,view,248676,",
    b"1433221999827,111016,addtocart,318965,",
    b"1433222276276,483172,transaction,356475,4000",
    b"1433221955914,257597,like,355908,",                  # unknown_type
    b"14332219.5,257597,view,355908,",                     # bad_timestamp
    b"1433221955914,257597,view,355908",                   # bad_columns
    b"1433221955914,,view,355908,",                        # empty_field
]
JSONL = [
    encode_event({"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": "i1",
                  "type": "view", "ts": 1_700_000_001_000, "dwell_ms": 1200, "category": "c1"}),
    encode_event({"event_id": "e2", "session_id": "s2", "item_id": "i2", "type": "buy",
                  "ts": "2023-11-14T22:13:22Z", "price": 5, "quantity": 1}),
    b"not json",
    encode_event({"event_id": "e3", "session_id": "s2", "item_id": "i2", "type": "like",
                  "ts": 1_700_000_003_000}),
    b"",
    encode_event({"event_id": "e4", "session_id": "s2", "type": "view",
                  "ts": 1_700_000_004_000}),
    encode_event({"event_id": "e9", "session_id": "s2", "item_id": "i" * 400, "type": "view",
                  "ts": 1_700_000_004_000}),
    encode_event({"event_id": "e5", "user_id": "u1", "session_id": "s3", "item_id": "i2",
                  "type": "click", "ts": 1_700_000_005_000}),
]
JSONL_BAD = {"not_json": 1, "unknown_type": 1, "missing_field": 1, "oversized": 1}
JSONL_LIMITS = EventLimits(max_bytes=300)


def write(directory: Path, name: str, lines: list[bytes]) -> Path:
    path = directory / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def ts_ms(iso: str) -> int:
    return int(np.datetime64(iso.removesuffix("Z"), "ms").astype(np.int64))


# --- the reference data ------------------------------------------------------------------------

@pytest.mark.parametrize("name, rows, sessions, items", [
    ("test.txt", 13568, 3416, 1771),
    ("train_full.txt", 70278, 17794, 2933),
    ("train_tr.txt", 53254, 13629, 2873),
    ("train_valid.txt", 16539, 4084, 2029),
])
def test_reference_files_read_whole(name, rows, sessions, items):
    columns, report = read_events(YOOCHOOSE_100K / name)
    assert (len(columns), len(columns.session_ids), len(columns.item_ids)) == (
        rows, sessions, items)
    assert (report.rows_read, report.rows_ok, report.rows_bad) == (rows, rows, {})
    assert np.array_equal(columns.user_ids, columns.session_ids)
    assert set(columns.type.tolist()) == {CLICK}
    assert (columns.dwell_ms == -1).all() and (columns.item_category == -1).all()


def test_reference_test_file_starts_as_the_file_does():
    columns, _ = read_events(YOOCHOOSE_100K / "test.txt", fmt="session-rec")
    # 1<TAB>214536502<TAB>1396860669.277, then 1<TAB>214536506<TAB>1396860886.998
    assert columns.ts_ms[:2].tolist() == [1396860669277, 1396860886998]
    assert columns.session_ids[columns.session[:2]].tolist() == ["1", "1"]
    assert columns.item_ids[columns.item[:2]].tolist() == ["214536502", "214536506"]
    assert columns.item[:2].tolist() == [0, 1]


def test_chunk_size_does_not_change_the_columns():
    whole, _ = read_events(YOOCHOOSE_100K / "train_full.txt")
    chunked, report = read_events(YOOCHOOSE_100K / "train_full.txt", chunk_rows=4099)
    for name in ("user", "session", "item", "type", "ts_ms", "dwell_ms", "user_ids",
                 "session_ids", "item_ids", "item_category", "categories"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name)), name
    assert report.rows_read == 70278


def test_reference_events_replay_with_stable_ids():
    report = ReadReport()
    events = list(iter_events(YOOCHOOSE_100K / "test.txt", report=report))
    assert len(events) == report.rows_ok == 13568
    assert events[0] == Event("session-rec:test.txt:2", "1", "1", "214536502", "click", CLICK,
                              1396860669277)
    assert events[-1].event_id == "session-rec:test.txt:13569"
    assert len({event.event_id for event in events}) == 13568


# --- YOOCHOOSE originals ------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_rows", [2, 1000])
def test_yoochoose_clicks_count_bad_rows_by_reason(tmp_path, chunk_rows):
    columns, report = read_events(write(tmp_path, "yoochoose-clicks.dat", CLICKS),
                                  chunk_rows=chunk_rows)
    assert report.rows_bad == CLICKS_BAD
    assert (report.rows_read, report.rows_ok, len(columns)) == (11, 5, 5)
    assert columns.session_ids.tolist() == ["1", "2", "7"]
    assert columns.session.tolist() == columns.user.tolist() == [0, 0, 1, 1, 2]
    assert columns.item_ids.tolist() == ["214536502", "214536500", "214662742", "214577561"]
    assert columns.item.tolist() == [0, 1, 2, 2, 3]
    assert columns.ts_ms[0] == ts_ms("2014-04-07T10:51:09.277Z") == 1396867869277
    assert (columns.type == CLICK).all()
    # category 0 is unknown; an item's category is the last one seen ("S", then "12")
    assert columns.categories.tolist() == ["S", "12", "2053203512"]
    assert columns.item_category.tolist() == [-1, -1, 1, 2]


def test_strict_mode_stops_at_the_first_bad_row(tmp_path):
    path = write(tmp_path, "yoochoose-clicks.dat", CLICKS)
    with pytest.raises(BadRowError) as caught:
        read_events(path, strict=True, chunk_rows=3)
    assert (caught.value.path, caught.value.line_no, caught.value.code) == (
        path, 6, "bad_columns")
    assert str(caught.value).startswith(f"{path}:6: bad_columns: expected 4 fields")


def test_yoochoose_buys_keep_price_and_quantity(tmp_path):
    path = write(tmp_path, "yoochoose-buys.dat", BUYS)
    report = ReadReport()
    events = list(iter_events(path, report=report))
    assert report.rows_bad == {"bad_price": 3, "bad_quantity": 2}
    assert [(e.event_id, e.user_id, e.item_id, e.type, e.price, e.quantity) for e in events] == [
        ("yoochoose-buys:yoochoose-buys.dat:1", "1", "214536502", "buy", 3140.0, 2),
        ("yoochoose-buys:yoochoose-buys.dat:2", "2", "214662742", "buy", None, None),
        ("yoochoose-buys:yoochoose-buys.dat:8", "9", "214600001", "buy", 10.5, 1),
    ]
    assert events[0].ts_ms == ts_ms("2014-04-07T10:55:00.000Z")


def test_yoochoose_clicks_and_buys_share_one_vocabulary(tmp_path):
    columns, report = read_yoochoose(write(tmp_path, "clicks.dat", CLICKS),
                                     write(tmp_path, "buys.dat", BUYS))
    assert report.rows_bad == {**CLICKS_BAD, "bad_price": 3, "bad_quantity": 2}
    assert columns.type.tolist() == [CLICK] * 5 + [BUY] * 3
    assert columns.session_ids.tolist() == ["1", "2", "7", "9"]
    assert columns.session.tolist() == [0, 0, 1, 1, 2, 0, 1, 3]
    assert columns.item.tolist() == [0, 1, 2, 2, 3, 0, 2, 4]
    assert columns.item_category.tolist() == [-1, -1, 1, 2, -1]
    assert len(report.paths) == 2


def test_yoochoose_needs_a_file():
    with pytest.raises(ValueError, match="clicks file, a buys file or both"):
        read_yoochoose()


# --- RetailRocket, session-rec, JSON lines ------------------------------------------------------

def test_retailrocket_events_map_to_our_types(tmp_path):
    columns, report = read_events(write(tmp_path, "events.csv", RETAILROCKET))
    assert report.rows_bad == {"unknown_type": 1, "bad_timestamp": 1, "bad_columns": 1,
                               "empty_field": 1}
    assert report.rows_read == 8
    assert columns.type.tolist() == [VIEW, VIEW, ADD_TO_CART, BUY]
    assert columns.user_ids.tolist() == ["257597", "992329", "111016", "483172"]
    assert np.array_equal(columns.user_ids, columns.session_ids)
    assert columns.ts_ms.tolist() == [1433221332117, 1433224214164, 1433221999827,
                                      1433222276276]
    assert columns.item_ids.tolist() == ["355908", "248676", "318965", "356475"]


def test_a_wrong_header_fails_at_once(tmp_path):
    path = write(tmp_path, "events.csv", [b"timestamp,visitor,event"] + RETAILROCKET[1:])
    with pytest.raises(FormatError, match="expected the header"):
        read_events(path, fmt="retailrocket")


def test_jsonl_rows_are_parsed_as_events(tmp_path):
    path = write(tmp_path, "events.jsonl", JSONL)
    columns, report = read_events(path, limits=JSONL_LIMITS)
    assert report.rows_bad == JSONL_BAD
    assert (report.rows_read, len(columns)) == (7, 3)
    assert columns.user_ids.tolist() == ["u1", "s2"]
    assert columns.user.tolist() == [0, 1, 0]
    assert columns.session_ids[columns.session].tolist() == ["s1", "s2", "s3"]
    assert columns.type.tolist() == [VIEW, BUY, CLICK]
    assert columns.ts_ms.tolist() == [1_700_000_001_000, 1_700_000_002_000, 1_700_000_005_000]
    assert columns.dwell_ms.tolist() == [1200, -1, -1]
    assert columns.categories.tolist() == ["c1"]
    assert columns.item_category.tolist() == [0, -1]


def test_jsonl_events_keep_their_own_ids(tmp_path):
    events = list(iter_events(write(tmp_path, "events.jsonl", JSONL), limits=JSONL_LIMITS))
    assert [event.event_id for event in events] == ["e1", "e2", "e5"]
    assert (events[1].user_id, events[1].price, events[1].quantity) == ("s2", 5.0, 1)


def test_jsonl_strict_names_the_line(tmp_path):
    with pytest.raises(BadRowError, match=r"events.jsonl:3: not_json"):
        read_events(write(tmp_path, "events.jsonl", JSONL), strict=True)


def test_an_endless_line_is_one_oversized_row(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"SessionId\tItemId\tTime\n" + b"7" * (3 << 20)
                     + b"\n1\t2\t1396860669.5\n")
    report = ReadReport()
    events = list(iter_events(path, report=report))
    assert report.rows_bad == {"oversized": 1}
    assert [(e.event_id, e.item_id, e.ts_ms) for e in events] == [
        ("session-rec:long.txt:3", "2", 1396860669500)]


@pytest.mark.parametrize("time_text, code", [(b"-5.0", "bad_timestamp"),
                                             (b"1e9", "bad_timestamp"),
                                             (b"946684799.999", "bad_timestamp"),  # 1999
                                             (b"946684800", None),
                                             (b"99999999999999999", "bad_timestamp"),
                                             (b"1396860669.277", None)])
def test_session_rec_times_are_epoch_seconds(tmp_path, time_text, code):
    path = write(tmp_path, "s.txt", [b"SessionId\tItemId\tTime", b"1\t2\t" + time_text])
    columns, report = read_events(path)
    assert report.rows_bad == ({code: 1} if code else {})
    assert len(columns) == (0 if code else 1)


def test_gzip_files_are_read_too(tmp_path):
    path = tmp_path / "yoochoose-buys.dat.gz"
    path.write_bytes(gzip.compress(b"\n".join(BUYS)))
    columns, report = read_events(path)
    assert (len(columns), report.rows_bad) == (3, {"bad_price": 3, "bad_quantity": 2})


def test_an_empty_file_gives_empty_columns(tmp_path):
    columns, report = read_events(write(tmp_path, "none.jsonl", []))
    assert (len(columns), report.rows_read) == (0, 0)
    assert (columns.user.dtype, columns.type.dtype, columns.dwell_ms.dtype) == (
        np.int64, np.int8, np.int32)


# --- choosing the format -----------------------------------------------------------------------

@pytest.mark.parametrize("name, first_line, fmt", [
    ("yoochoose-clicks.dat", CLICKS[0], "yoochoose-clicks"),
    ("yoochoose-buys.dat.gz", b"", "yoochoose-buys"),
    ("train.txt", b"SessionId\tItemId\tTime", "session-rec"),
    ("events.csv", RETAILROCKET[0], "retailrocket"),
    ("log.ndjson", b"", "jsonl"),
    ("log.jsonl", b"", "jsonl"),
    ("replay.log", JSONL[0], "jsonl"),
])
def test_format_is_told_by_name_or_first_line(tmp_path, name, first_line, fmt):
    assert detect_format(write(tmp_path, name, [first_line])) == fmt
    assert fmt in FORMATS


def test_an_unknown_format_fails_clearly(tmp_path):
    path = write(tmp_path, "data.csv", [b"a,b,c"])
    with pytest.raises(FormatError, match="cannot tell its format"):
        read_events(path)
    with pytest.raises(FormatError, match="unknown format 'csv'"):
        iter_events(path, fmt="csv")


def test_a_missing_file_fails_before_reading(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such event file: .*absent.jsonl"):
        iter_events(tmp_path / "absent.jsonl")


def test_a_csv_id_longer_than_the_limit_is_refused_as_the_parser_refuses_it(tmp_path):
    """The readers apply the event contract's id limit (RECSYS_MAX_ID_CHARS), in characters."""
    long_id = "é" * DEFAULT_LIMITS.max_id_chars  # at the limit in characters, twice it in bytes
    path = write(tmp_path, "s.txt", [b"SessionId\tItemId\tTime",
                                     b"1\t" + long_id.encode() + b"\t1396860669.5",
                                     b"1\t" + (long_id + "x").encode() + b"\t1396860669.5"])
    columns, report = read_events(path)
    assert report.rows_bad == {"field_too_long": 1}
    assert len(columns) == 1
