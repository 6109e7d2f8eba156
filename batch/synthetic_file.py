"""The synthetic shop (:mod:`batch.synthetic`) written to a file, and ``recsys synthetic``.

Events become compact JSON lines built as fixed-width byte rows with numpy
(no per-event Python), so millions of events are written in seconds; the
ground truth goes beside the file (:func:`batch.synthetic.truth_dir`).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np

from batch.synthetic import (CATEGORY_PREFIX, DEFAULT_CHUNK_EVENTS, ITEM_PREFIX, SESSION_PREFIX,
                             USER_PREFIX, VIEW, EventChunk, GroundTruth, ShopParams, SyntheticShop,
                             truth_dir)
from shared.events import EVENT_TYPES

_LINES_PER_BLOCK = 1 << 17


def _fixed(byte_strings: list[bytes]) -> np.ndarray:
    """Byte strings as rows of a NUL-padded ``uint8`` matrix."""
    table = np.array(byte_strings, dtype=np.bytes_)
    return table.view(np.uint8).reshape(len(byte_strings), table.itemsize)


def _digits(values: np.ndarray) -> np.ndarray:
    """Decimal digits of non-negative ints as ASCII rows, right-aligned, NUL-padded."""
    values = np.maximum(values, 0).astype(np.int64)[:, None]
    width = len(str(int(values.max()))) if len(values) else 1
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (values // powers % 10 + ord("0")).astype(np.uint8)
    digits[(values < powers) & (powers > 1)] = 0
    return digits


def _field(prefix: bytes, values: np.ndarray, suffix: bytes = b"", present=None) -> np.ndarray:
    """``prefix``, the number, ``suffix`` per row; all NUL where ``present`` is False."""
    n = len(values)
    block = np.concatenate([np.broadcast_to(_fixed([prefix]), (n, len(prefix))), _digits(values),
                            np.broadcast_to(_fixed([suffix]), (n, len(suffix)))], axis=1)
    if present is not None:
        block[~present] = 0
    return block


class _JsonLines:
    """Encodes events as compact JSON lines: NUL-padded fixed-width rows, NULs then dropped."""

    def __init__(self, shop: SyntheticShop):
        self._event_prefix = f'{{"event_id":"e{shop.seed}-'.encode()
        self._item = _fixed([f',"item_id":"{ITEM_PREFIX}{i}"'.encode()
                             for i in range(shop.params.n_items)])
        self._type = _fixed([f',"type":"{name}"'.encode() for name in EVENT_TYPES])
        self._category_price = _fixed([
            f',"category":"{CATEGORY_PREFIX}{c}","price":{cents // 100}.{cents % 100:02d}'.encode()
            for c, cents in zip(shop.item_category.tolist(), shop.item_price_cents.tolist())])
        self._n_users = shop.n_users

    def encode(self, chunk: EventChunk, first_event: int) -> Iterator[np.ndarray]:
        """The lines of ``chunk`` as ``uint8`` arrays, a block at a time; event ids count from
        ``first_event``."""
        for lo in range(0, len(chunk), _LINES_PER_BLOCK):
            block = chunk.take(slice(lo, lo + _LINES_PER_BLOCK))
            rows = np.concatenate([
                _field(self._event_prefix, first_event + lo + np.arange(len(block)), b'"'),
                _field(b',"user_id":"' + USER_PREFIX.encode(), block.user, b'"',
                       present=block.user < self._n_users),
                _field(b',"session_id":"' + SESSION_PREFIX.encode(), block.session, b'"'),
                self._item[block.item],
                self._type[block.type],
                _field(b',"ts":', block.ts_ms),
                _field(b',"dwell_ms":', block.dwell_ms, present=block.type == VIEW),
                self._category_price[block.item],
                _field(b',"quantity":', block.quantity, present=block.quantity > 0),
                np.broadcast_to(_fixed([b"}\n"]), (len(block), 2)),
            ], axis=1).ravel()
            yield rows[rows != 0]


def write_jsonl(path: str | Path, n_events: int, *, seed: int, params: ShopParams = ShopParams(),
                chunk_events: int = DEFAULT_CHUNK_EVENTS,
                progress: Callable[[int], None] | None = None) -> GroundTruth:
    """Write ``n_events`` events of the synthetic shop as JSON lines, and the ground truth beside them.

    One compact JSON object per line in global time order, with the fields of
    the event contract: ``event_id`` (``e<seed>-<line number>``), ``user_id``
    (absent for anonymous visitors), ``session_id``, ``item_id``, ``type``,
    ``ts`` (epoch ms), ``dwell_ms`` (views only), ``category``, ``price`` and
    ``quantity`` (add-to-cart and buy only). The file appears under its name
    when complete; the ground truth goes to :func:`truth_dir` of ``path``.

    Parameters
    ----------
    path : str or Path
    n_events : int
    seed : int
    params : ShopParams
    chunk_events : int
        Events drawn and held in memory at a time.
    progress : callable, optional
        Called with the number of events written after each chunk.

    Returns
    -------
    GroundTruth
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shop = SyntheticShop(n_events, seed=seed, params=params, chunk_events=chunk_events)
    encoder = _JsonLines(shop)
    written = 0
    with open(partial, "wb") as out:
        for chunk in shop.event_chunks():
            for lines in encoder.encode(chunk, written):
                out.write(lines)
            written += len(chunk)
            if progress is not None:
                progress(written)
    truth = shop.truth()
    truth.save(truth_dir(path))
    partial.replace(path)
    return truth


class _ProgressLine:
    """Rewrites one line on stderr: events done, of how many, and events per second."""

    def __init__(self, total: int):
        self.total, self.started = total, time.perf_counter()

    def __call__(self, done: int) -> None:
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        print(f"\r{done:,}/{self.total:,} events  {rate:,.0f} events/s", end="", file=sys.stderr,
              flush=True)

    def finish(self) -> None:
        print(f"\ndone in {time.perf_counter() - self.started:.1f} s", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recsys synthetic``: size, seed, output, and every :class:`ShopParams` field."""
    parser.add_argument("--events", type=int, required=True, help="Events to write.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (>= 0).")
    parser.add_argument("--out", type=Path, required=True,
                        help="JSON-lines file to write; the ground truth goes to <out>.truth/.")
    parser.add_argument("--chunk-events", type=int, default=DEFAULT_CHUNK_EVENTS,
                        help="Events drawn and held in memory at a time.")
    for f in fields(ShopParams):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                            default=f.default, help=f.metadata["doc"])


def run(args: argparse.Namespace, settings=None) -> int:
    """Write the synthetic events and ground truth that ``args`` ask for; ``settings`` are not needed."""
    params = ShopParams(**{f.name: getattr(args, f.name) for f in fields(ShopParams)})
    progress = _ProgressLine(args.events)
    truth = write_jsonl(args.out, args.events, seed=args.seed, params=params,
                        chunk_events=args.chunk_events, progress=progress)
    progress.finish()
    print(f"{args.out}: {args.events:,} events, {truth.meta['n_users']:,} users, "
          f"{truth.meta['n_sessions']:,} sessions; truth in {truth_dir(args.out)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m batch.synthetic_file``: the same as ``recsys synthetic``."""
    parser = argparse.ArgumentParser(prog="python -m batch.synthetic_file", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
