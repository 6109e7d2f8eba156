"""``recsys validate``: one line per bad row with its line, field and reason, a summary, and
the exit status; a file that cannot be read is one line on standard error."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from batch.formats import BadRow
from batch.readers import REFERENCE_DATA_DIR
from batch.validate import (MAX_BAD_ROWS_SHOWN, FirstBadRows, bad_row_lines, summary_line,
                            validate_file)
from recsys import cli
from shared.events import EventLimits, encode_event

T = 1_700_000_000_000
GOOD = {"event_id": "e1", "session_id": "s1", "item_id": "i1", "type": "view", "ts": T}


def event(**changes) -> bytes:
    return encode_event({k: v for k, v in {**GOOD, **changes}.items() if v is not ...})


def write(directory: Path, name: str, lines: list[bytes]) -> Path:
    path = directory / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def validate(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    """``recsys validate ARGV``: (exit status, stdout lines, stderr lines)."""
    status = cli.main(["validate", *argv])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


JSONL = [
    event(),
    event(event_id="e2", ts=1396867869),                          # 2: epoch seconds
    b"",                                                           # blank: skipped, not counted
    event(event_id="e3", item_id=...),                             # 4
    b'{"event_id": "e4", ',                                        # 5
    event(event_id="e5", category="c" * 20_000),                   # 6: over 16 KiB
    event(event_id="e6", user_id="u\n1"),                          # 7
    event(event_id="e7", type="purchase", dwell_ms=-1),            # 8: the first problem
    event(event_id="e8", ts="2014-04-07T10:51:09.277Z", price=12.5),
]


def test_each_bad_row_is_a_line_with_its_file_line_field_and_reason(tmp_path, capsys):
    path = write(tmp_path, "events.jsonl", JSONL)
    status, out, err = validate(capsys, str(path))
    assert status == 1 and err == []
    assert out == [
        f"{path}:2: ts: 'ts' 1396867869 looks like seconds since the epoch (2014-04-07T10:51:09Z"
        " in seconds, 1970-01-17T04:01:07.869Z in milliseconds); send milliseconds (ts * 1000)"
        " (bad_timestamp)",
        f"{path}:4: item_id: 'item_id' is required (missing_field)",
        f"{path}:5: (row): unexpected end of data: line 1 column 20 (char 19) (not_json)",
        f"{path}:6: (row): longer than 16384 bytes (oversized)",
        f"{path}:7: user_id: 'user_id' contains the control character U+000A at index 1"
        " (control_character)",
        f"{path}:8: type: 'type' is 'purchase', not one of ['view', 'click', 'add_to_cart',"
        " 'buy'] (unknown_type)",
        "8 rows, 2 valid, 6 bad",
    ]


def test_a_valid_file_prints_only_the_summary_and_exits_0(tmp_path, capsys):
    path = write(tmp_path, "events.jsonl", [event(event_id=f"e{n}", ts=T + n) for n in range(5)])
    assert validate(capsys, str(path)) == (0, ["5 rows, 5 valid, 0 bad"], [])


def test_the_reference_data_is_valid():
    for name in ("train_tr.txt", "test.txt"):
        report = validate_file(REFERENCE_DATA_DIR / "yoochoose-100k" / name)
        assert report.rows_read > 10_000 and report.rows_bad == {}


def test_rows_of_the_data_set_formats_name_their_column(tmp_path, capsys):
    path = write(tmp_path, "events.csv", [
        b"timestamp,visitorid,event,itemid,transactionid",
        b"1433221332117,257597,view,355908,",
        b"1433222276276,257597,wishlist,355908,",
        b"1433221955914,,view,111016,",
        b"1433221955915,121688,view,111016",
        b"14332219.5,121688,view,111016,",
    ])
    status, out, _ = validate(capsys, str(path))
    assert status == 1
    assert out == [
        f"{path}:3: event: event is not one of ['view', 'addtocart', 'transaction']"
        " (unknown_type)",
        f"{path}:4: visitorid: visitorid is empty (empty_field)",
        f"{path}:5: (row): expected 5 fields separated by ',' (bad_columns)",
        f"{path}:6: timestamp: timestamp is not epoch milliseconds (bad_timestamp)",
        "5 rows, 1 valid, 4 bad",
    ]


def test_yoochoose_and_session_rec_columns_are_named_too(tmp_path):
    buys = write(tmp_path, "yoochoose-buys.dat", [
        b"1,2014-04-06T09:06:00.000Z,214600000,abc,1",
        b"2,2014-04-06T09:06:00.000Z,214600000,10,0.5",
        b"3,2014-04-06T09:06:00.000,214600000,10,1",
        b",2014-04-06T09:06:00.000Z,214600000,10,1",
    ])
    rows = FirstBadRows()
    validate_file(buys, on_bad_row=rows)
    assert [(row.line_no, row.field, row.code) for row in rows] == [
        (1, "price", "bad_price"), (2, "quantity", "bad_quantity"),
        (3, "timestamp", "bad_timestamp"), (4, "session", "empty_field")]
    sessions = write(tmp_path, "train.txt", [b"SessionId\tItemId\tTime", b"1\t\t5.0", b"1\t2\tx"])
    rows = FirstBadRows()
    validate_file(sessions, on_bad_row=rows)
    assert [(row.line_no, row.field, row.code) for row in rows] == [
        (2, "ItemId", "empty_field"), (3, "Time", "bad_timestamp")]


def test_rows_come_in_file_order_across_chunks_and_codes(tmp_path):
    lines = [event(event_id=f"e{n}", ts=n if n % 3 == 0 else T + n) for n in range(1, 40)]
    lines[9] = b"x" * 20_000
    path = write(tmp_path, "events.jsonl", lines)
    seen: list[BadRow] = []
    report = validate_file(path, on_bad_row=seen.append)
    assert [row.line_no for row in seen] == sorted([10] + list(range(3, 40, 3)))
    assert report.rows_bad == {"bad_timestamp": 13, "oversized": 1}
    assert summary_line(report) == "39 rows, 25 valid, 14 bad"


def test_the_settings_limits_apply(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, "events.jsonl", [event(item_id="i" * 10)])
    assert validate(capsys, str(path))[0] == 0
    monkeypatch.setenv("RECSYS_MAX_ID_CHARS", "8")
    status, out, _ = validate(capsys, str(path))
    assert status == 1 and out[0].endswith(
        ":1: item_id: 'item_id' is 10 characters, more than the limit of 8 (RECSYS_MAX_ID_CHARS)"
        " (field_too_long)")
    assert validate_file(path, limits=EventLimits(max_id_chars=10)).rows_bad == {}


def test_a_format_flag_reads_the_file_in_that_format(tmp_path, capsys):
    path = write(tmp_path, "log.txt", [event()])
    assert validate(capsys, str(path), "--format", "jsonl")[:2] == (0, ["1 rows, 1 valid, 0 bad"])
    status, out, err = validate(capsys, str(path), "--format", "retailrocket")
    assert (status, out, len(err)) == (2, [], 1)
    assert err[0].startswith("recsys validate: ") and "expected the header" in err[0]


@pytest.mark.parametrize("argv, complaint", [
    (["absent.jsonl"], "no such event file: "),
    (["events.jsonl", "--format", "csv"], "unknown format 'csv'; use one of ['jsonl', "),
    (["data.csv"], "cannot tell its format from its name or first line"),
    (["damaged.jsonl.gz"], "damaged.jsonl.gz: "),
    (["."], "no such event file: "),
])
def test_a_file_that_cannot_be_read_is_one_line_on_stderr_and_exit_2(tmp_path, capsys,
                                                                    monkeypatch, argv,
                                                                    complaint):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "events.jsonl", [event()])
    write(tmp_path, "data.csv", [b"a,b,c"])
    (tmp_path / "damaged.jsonl.gz").write_bytes(gzip.compress(event() * 100)[:-30])
    status, out, err = validate(capsys, *argv)
    assert (status, out) == (2, [])
    assert len(err) == 1 and err[0].startswith("recsys validate: ") and complaint in err[0]


def test_a_report_names_the_first_rows_then_counts_the_rest():
    rows = FirstBadRows()
    for n in range(1, 31):
        rows(BadRow(Path("e.jsonl"), n, "not_json", None, "bad"))
    assert len(rows) == MAX_BAD_ROWS_SHOWN == 20
    lines = bad_row_lines(rows, 30)
    assert lines[0] == "e.jsonl:1: (row): bad (not_json)"
    assert lines[19] == "e.jsonl:20: (row): bad (not_json)"
    assert lines[20:] == ["... and 10 more"]
    assert bad_row_lines(rows[:3], 3) == [str(row) for row in rows[:3]]


def test_the_command_has_a_help_line_and_a_description(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "validate" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["validate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "FILE:LINE: field: reason (code)" in text and "Exit status 0" in text
