"""exporters.s3_multipart.cut: a pure function, no server."""

from __future__ import annotations


from exporters.s3_multipart import cut


def test_cut_regroups_chunks_into_exact_parts() -> None:
    chunks = [b"a" * 3, b"b" * 7, b"c" * 1, b"d" * 10]
    parts = list(cut(chunks, 5))
    assert [len(p) for p in parts] == [5, 5, 5, 5, 1]
    assert b"".join(parts) == b"".join(chunks)
    assert list(cut([], 5)) == [] and list(cut([b"xy"], 5)) == [b"xy"]
