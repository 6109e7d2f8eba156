"""Run ``recsys`` with the model save pausing after its first array file.

``python tests/faults/slow_save.py MARKER retrain ...`` runs ``recsys retrain
...`` (:func:`recsys.cli.main`) unchanged except for the file writer of
:mod:`shared.model_store`: once the first array file of a save is written and
fsynced inside the save's ``.tmp-*`` folder, the writer writes the name of
that folder to ``MARKER`` (under a temporary name, then renamed, so a reader
sees all of it or nothing) and sleeps for :data:`PAUSE_S`. A test waits for
``MARKER`` and kills the process in the middle of its save: the temporary
folder then holds its owner file and one array, and no ``meta.json``.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import shared.model_store as model_store
from recsys import cli

#: How long the save pauses; far longer than any test waits before killing it.
PAUSE_S = 600.0


def pause_after_first_file(marker: Path) -> None:
    """Patch :func:`shared.model_store._write_array` to pause after its first file."""
    write = model_store._write_array

    def write_then_pause(path: Path, array):
        entry = write(path, array)
        if not marker.exists():
            partial = marker.with_name(marker.name + ".partial")
            partial.write_text(Path(path).parent.name)
            os.rename(partial, marker)
            time.sleep(PAUSE_S)
        return entry

    model_store._write_array = write_then_pause


if __name__ == "__main__":
    pause_after_first_file(Path(sys.argv[1]))
    sys.exit(cli.main(sys.argv[2:]))
