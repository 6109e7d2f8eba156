"""What the worker's HTTP server exposes with the default settings, checked in this process.

The worker's Faust app is configured at import (``stream.app``); its web server is
started here on a free port without the rest of the app (no broker is needed).
``tests/integration/test_kafka_security.py`` checks the same of a worker process.
"""
from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import pytest

from shared.broker import free_port
from shared.config import load_settings

#: Variables that change what the test checks: the project's settings and Faust's own.
OVERRIDES = ("RECSYS_WEB_HOST", "RECSYS_WEB_TABLE_VIEWS", "WEB_BIND", "WEB_HOST",
             "APP_WEB_TABLES_ENABLED", "APP_WEB_ROUTER_ENABLED")


def test_defaults_bind_loopback_and_leave_the_table_views_off():
    settings = load_settings({})
    assert settings.web_host == "127.0.0.1" and settings.web_table_views is False
    assert load_settings({"RECSYS_WEB_TABLE_VIEWS": "true"}).web_table_views is True


@pytest.fixture(scope="module")
def app():
    set_here = [name for name in OVERRIDES if name in os.environ]
    if set_here:
        pytest.skip(f"{', '.join(set_here)} set in this environment; the test checks the defaults")
    import stream.views  # noqa: F401  (registers the worker's views on the app)
    from stream.app import app

    return app


def test_the_app_binds_loopback_and_advertises_it_to_other_workers(app):
    assert app.conf.web_bind == "127.0.0.1"
    assert app.conf.web_host == "127.0.0.1"
    assert not app.conf.web_tables_enabled and not app.conf.web_router_enabled


# The port is changed after the app was configured, for this server only (and put back).
@pytest.mark.filterwarnings("ignore:Setting new value for configuration key 'web_port'")
def test_the_server_answers_health_but_not_table_or_router(app):
    port, configured = free_port(), app.conf.web_port

    async def run() -> dict[str, int]:
        web = app.web
        web.init_server()
        await web.start_server()
        try:
            statuses = {}
            async with aiohttp.ClientSession() as session:
                for path in ("/health/", "/metrics.json", "/metrics", "/table/", "/table/users/",
                             "/router/", "/router/users/"):
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        statuses[path] = response.status
            with pytest.raises(OSError):  # another loopback address: nothing listens there
                socket.create_connection(("127.0.0.2", port), timeout=2).close()
            return statuses
        finally:
            await web.stop_server()

    app.conf.web_port = port
    try:
        statuses = asyncio.run(run())
    finally:
        app.conf.web_port = configured
    assert statuses == {"/health/": 503, "/metrics.json": 200, "/metrics": 200, "/table/": 404,
                        "/table/users/": 404, "/router/": 404, "/router/users/": 404}
