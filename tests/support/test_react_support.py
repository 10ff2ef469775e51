"""The REACT toy builders themselves: pool rows and captions in order, unit vectors of norm 1."""

import numpy as np
import pyarrow.parquet as pq

from tests.support.react_support import unit_vectors, write_toy_pool


def test_toy_pool_rows_and_captions(tmp_path):
    path = write_toy_pool(tmp_path, count=10)
    table = pq.read_table(path)
    assert table.num_rows == 10
    assert table.column("caption").to_pylist()[:5] == [
        "red square",
        "green square",
        "blue square",
        "yellow square",
        "red circle",
    ]
    assert all((tmp_path / p).is_file() for p in table.column("image_path").to_pylist())


def test_unit_vectors_are_unit():
    vectors = unit_vectors(5, 7)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
