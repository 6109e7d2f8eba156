"""Doctest collection of ``stream``: every module but the three that build or wire the app.

``stream.app`` builds the Faust app from the settings when imported (Faust's
decorators need it at import), and ``stream.agents`` and ``stream.views``
register on it; they hold no doctests, and ``tests/stream`` tests them.
Everything they call lives in modules that import without the app.
"""
collect_ignore = ["app.py", "agents.py", "views.py"]
