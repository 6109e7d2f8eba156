"""The ``recsys`` command and the demo: the top layer.

``shared`` is the floor; ``batch`` (retrain, evaluation, data) and ``stream``
(the Faust worker) stand on it side by side and never import each other. Only
this package may use both: the command line dispatches to their jobs, and the
demo runs a retrain in process and starts the worker as a process.
"""
