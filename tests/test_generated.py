"""`generated/` holds committed renderings of reference specs; any template change shows up here.

After an intended change: ``ETN_UPDATE_GOLDEN=1 pytest tests/test_generated.py`` and review the diff.
"""

import os
from pathlib import Path

import pytest

import etn
from etn.backends.codegen import library_files

GENERATED = Path(__file__).parent.parent / "generated"
REFERENCE_SPECS = ["tiny", "binary", "compressed"]  # compressed: one core compressed, two folded


@pytest.mark.parametrize("name", REFERENCE_SPECS)
def test_committed_rendering_is_current(name):
    files = library_files(etn.schedule(etn.catalogue.load(name)))
    folder = GENERATED / name
    if os.environ.get("ETN_UPDATE_GOLDEN"):
        folder.mkdir(exist_ok=True)
        for f, text in files.items():
            (folder / f).write_text(text)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for f, text in files.items():
        assert (folder / f).read_text() == text, f"generated/{name}/{f} is stale: re-render and review"
