"""Cached kernels compiled from other kernel sources are dropped at import."""
import os

from jitconv.kernels import cache


def _files(folder, names):
    for n in names:
        (folder / n).write_bytes(b"x")


def test_a_changed_source_digest_drops_only_our_cached_kernels(tmp_path):
    ours = ["conv_tiled.conv2d_tiled-1.py311.nbi", "conv_tiled.conv2d_tiled-1.py311.1.nbc"]
    other = ["someone_else.f-1.py311.nbi", "conv_tiled.cpython-311.pyc"]
    _files(tmp_path, ours + other)
    assert cache.drop_stale([str(tmp_path)], digest="A", modules=("conv_tiled.",)) == 2
    assert sorted(os.listdir(tmp_path)) == sorted(other + [cache.STAMP])
    _files(tmp_path, ours)                       # recompiled under digest A: kept
    assert cache.drop_stale([str(tmp_path)], digest="A", modules=("conv_tiled.",)) == 0
    assert set(ours) <= set(os.listdir(tmp_path))
    assert cache.drop_stale([str(tmp_path)], digest="B", modules=("conv_tiled.",)) == 2


def test_a_fresh_folder_is_stamped_so_the_next_import_keeps_its_cache(tmp_path):
    folder = tmp_path / "new" / "__pycache__"
    assert cache.drop_stale([str(folder)], digest="A", modules=("x.",)) == 0
    assert (folder / cache.STAMP).read_text().strip() == "A"


def test_the_digest_follows_every_kernel_source(tmp_path):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    before = cache.sources_digest(str(tmp_path))
    (tmp_path / "b.py").write_text("x = 2\n")
    assert cache.sources_digest(str(tmp_path)) != before
    assert len(cache.sources_digest()) == 20


def test_the_loaded_kernels_use_a_stamped_folder():
    folders = cache.cache_folders()
    assert folders
    for folder in folders:
        with open(os.path.join(folder, cache.STAMP)) as f:
            assert f.read().strip() == cache.sources_digest()
