import sys
from pathlib import Path

import pytest

from l2h_lightning import masked_softmax

sys.path.insert(0, str(Path(__file__).parent))  # tests import the reference implementations as `reference`


@pytest.fixture(autouse=True)
def _chunks_of_a_few_rows(monkeypatch):
    """Chunks of 1/32 of the logits, without the engine's floor (`_MIN_CHUNK` entries): the tests' small inputs
    then go through every chunked loop in many steps, as large logits do (one row a chunk, often).
    `test_engine_exact.py::test_trees_do_not_depend_on_the_chunk_size` runs with the floor too."""
    monkeypatch.setattr(masked_softmax, "_MIN_CHUNK", 1)
