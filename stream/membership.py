"""The worker's name in its consumer group, stable across restarts (static membership).

With a ``group.instance.id`` the broker remembers which partitions a worker
held: a worker restarted under the same id (after a crash, a deploy, a
``kill -9``) gets them back at once, without a rebalance of the others and
without waiting for its old session to time out. Two live workers with one id
fence each other, so the id must name one worker: ``RECSYS_WORKER_ID`` when
set, else the host name and the table directory, which a worker on a machine
owns alone (RocksDB locks it).
"""
from __future__ import annotations

import hashlib
import os
import socket


def group_instance_id(settings) -> str:
    """``<app id>-<worker id>``, or ``<app id>-<host>-<hash of the table directory>``.

    >>> from shared.config import load_settings
    >>> group_instance_id(load_settings({"RECSYS_WORKER_ID": "w1", "RECSYS_APP_ID": "shop"}))
    'shop-w1'
    """
    if settings.worker_id:
        return f"{settings.app_id}-{settings.worker_id}"
    tables = os.path.realpath(os.path.expanduser(settings.table_dir))
    digest = hashlib.sha256(tables.encode()).hexdigest()[:10]
    return f"{settings.app_id}-{socket.gethostname()}-{digest}"
