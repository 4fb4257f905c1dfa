"""The numba cache stamp tracks every kernel source (callers inline helpers across modules)."""

from pathlib import Path

from graphc.kernels import _cache, elementwise


def test_stamp_matches_sources_after_import():
    cache_dir = Path(elementwise.softmax_fwd._cache._cache_path)
    assert (cache_dir / _cache._STAMP).read_text() == _cache.sources_digest()
    assert _cache.drop_stale_cache(elementwise.softmax_fwd) is False  # up to date: keeps files


def test_digest_covers_every_jit_module():
    names = {p.name for p in _cache._jit_sources()}
    assert {"vmath.py", "conv.py", "recurrent_lstm.py", "elementwise.py", "norm.py"} <= names
    assert not {"bench.py", "_cache.py", "views.py"} & names
