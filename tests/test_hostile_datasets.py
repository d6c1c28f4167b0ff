"""Hostile downloads given to data_scripts/prepare_{cub,oxford}.py (issue 19).

Each crafted file is small on disk but would exhaust memory or disk if prepared naively; each must
be refused with one line naming the file (and member or value) before the damage, leaving nothing
in the output folder.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
import re
import resource
import signal
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import real_data_fixtures
from real_data_fixtures import (CUB_KEYS, CUB_TEST_CLASSES, CUB_TRAIN_CLASSES, OXFORD_LABELS,
                                make_attngan_birds, make_cub, make_reed, make_tgz, make_zip)
from s2i_lib.data import real_datasets
from s2i_lib.data.real_datasets import (DatasetPreparationError, load_plain_pickle, prepare_cub,
                                        prepare_oxford)

REPO = Path(__file__).resolve().parents[1]
QUIET = dict(progress=False, log=lambda msg: None, workers=2, size=8)
TRAIN_KEYS = [k for k in CUB_KEYS if k.split("/")[0] in CUB_TRAIN_CLASSES]
TEST_KEYS = [k for k in CUB_KEYS if k.split("/")[0] in CUB_TEST_CLASSES]
GiB = 2**30


@pytest.fixture(autouse=True)
def bounded_process():
    """Should a hole reopen, fail with MemoryError / a full-file error rather than take the machine down.

    Caps this process's address space at its current size + 2 GiB and any file it writes at
    256 MiB (SIGXFSZ ignored, so an oversized write raises instead of killing pytest).
    """
    status = Path("/proc/self/status")
    if not status.exists():   # RLIMIT_AS is not enforced outside Linux
        yield
        return
    vm = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
              if line.startswith("VmSize:"))
    limits = {resource.RLIMIT_AS: vm + 2 * GiB, resource.RLIMIT_FSIZE: 256 * 2**20}
    before = {r: resource.getrlimit(r) for r in limits}
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for r, soft in limits.items():
        hard = before[r][1]
        resource.setrlimit(r, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    try:
        yield
    finally:
        for r, lim in before.items():
            resource.setrlimit(r, lim)
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.fixture
def cub_downloads(tmp_path):
    d = tmp_path / "cub_downloads"
    d.mkdir()
    return make_cub(d), make_reed(d, CUB_KEYS, CUB_TRAIN_CLASSES, CUB_TEST_CLASSES)


@pytest.fixture
def oxford_downloads(tmp_path):
    return real_data_fixtures.oxford_downloads(tmp_path / "oxford_downloads")


def _nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in parent.iterdir() if ".partial-" in p.name] == []


def _one_line(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "data_scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


# ----------------------------------------------------------------------- crafted hostile files
def shared_reference_pickle() -> bytes:
    """~300 bytes that unpickle into ten nested levels of ten shared references: 10**10 keys,
    80 GB of list entries once copied."""
    x = ["002.Laysan_Albatross/Laysan_Albatross_0044_784"] * 10
    for _ in range(9):
        x = [x] * 10
    return pickle.dumps(x, protocol=2)


def uniform_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, written row by row so neither the test nor the file is big."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)   # filter byte 0 + packed pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)   # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tgz_with_zero_member(folder: Path, archive: Path, member: str, size: int = GiB) -> Path:
    """``folder`` as a .tgz followed by ``member``: ``size`` real zero bytes, ~1/1000 of that on disk.

    One gzip stream, written by hand: a full flush resets the compressor's history, so the
    compressed form of a 16 MiB block of zeros can be repeated verbatim instead of recomputed.
    """
    block = bytes(16 * 2**20)
    assert size % len(block) == 0
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w").add(folder, arcname=folder.name)
    info = tarfile.TarInfo(member)
    info.size = size
    head = buf.getvalue() + info.tobuf()   # the members so far + the big member's header
    tail = bytes(2 * tarfile.BLOCKSIZE)    # end of archive
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)   # raw deflate, framed below
    start = z.compress(head) + z.flush(zlib.Z_FULL_FLUSH)
    zeros = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    end = z.compress(tail) + z.flush()
    crc = zlib.crc32(head)
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    with open(archive, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")   # gzip header, no name/time
        f.write(start)
        for _ in range(size // len(block)):
            f.write(zeros)
        f.write(end)
        f.write(struct.pack("<II", zlib.crc32(tail, crc), (len(head) + size + len(tail)) % 2**32))
    return archive


def mat_with_inflating_labels(path: Path, labels: list[int], declared: int) -> Path:
    """A compressed MATLAB v5 file whose (1, n) double 'labels' declares ``declared`` data bytes
    (zeros, really there once inflated): scipy allocates and fills them before checking the shape."""
    from scipy.io import savemat
    buf = io.BytesIO()
    savemat(buf, {"labels": np.array([labels], dtype=float)})
    raw = buf.getvalue()
    header, (kind, size), matrix = raw[:128], struct.unpack("<II", raw[128:136]), raw[136:]
    assert kind == 14 and size == len(matrix)           # miMATRIX: flags, dims, name, data
    data_tag = 48                                        # after three 16-byte sub-elements
    assert struct.unpack("<I", matrix[data_tag:data_tag + 4])[0] == 9   # miDOUBLE
    matrix = matrix[:data_tag] + struct.pack("<II", 9, declared)
    z = zlib.compressobj(9)
    body = z.compress(struct.pack("<II", 14, len(matrix) + declared) + matrix)
    block = bytes(2**20)
    body += b"".join(z.compress(block) for _ in range(declared // len(block))) + z.flush()
    path.write_bytes(header + struct.pack("<II", 15, len(body)) + body)   # miCOMPRESSED
    return path


# ------------------------------------------------------------------------------ 1. pickles
def test_pickle_of_shared_references_is_refused(cub_downloads, tmp_path):
    cub, _ = cub_downloads
    data = shared_reference_pickle()
    assert len(data) < 400
    birds = make_attngan_birds(tmp_path, TRAIN_KEYS, TEST_KEYS)
    (birds / "train" / "filenames.pickle").write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(DatasetPreparationError,
                       match=r"birds/train/filenames.pickle: refused: the pickle expands to more "
                             r"than 1,000,000 items") as err:
        prepare_cub(cub, birds, out, **QUIET)
    _one_line(err)
    _nothing_written(tmp_path, out)
    # a key list far longer than CUB's (11,788 keys) is still fine
    keys = [f"{i:03d}.Class/Image_{i}" for i in range(50_000)]
    f = tmp_path / "long.pickle"
    f.write_bytes(pickle.dumps(keys, protocol=2))
    assert load_plain_pickle(f) == keys


def test_pickle_nested_without_end_is_refused(tmp_path):
    selfish = []
    selfish.append(selfish)        # a list that contains itself
    deep = "key"
    for _ in range(100):
        deep = [deep]
    for name, obj in (("selfish", selfish), ("deep", deep)):
        f = tmp_path / f"{name}.pickle"
        f.write_bytes(pickle.dumps(obj, protocol=2))
        with pytest.raises(DatasetPreparationError,
                           match=rf"{name}.pickle: refused: the pickle nests more than 32 levels"):
            load_plain_pickle(f)


# ------------------------------------------------------------------------- 2. Oxford labels
@pytest.mark.parametrize("bad, shown", [(3_000_000, "3000000"), (1e300, "1e+300"), (103, "103"),
                                        (0, "0"), (2.5, "2.5"), (float("nan"), "nan")])
def test_oxford_label_out_of_range(oxford_downloads, tmp_path, bad, shown):
    from scipy.io import savemat
    jpg, mat, reed = oxford_downloads
    labels = np.array([OXFORD_LABELS], dtype=float)   # MATLAB's default type, as in the real file
    labels[0, 2] = bad
    savemat(mat, {"labels": labels})
    out = tmp_path / "out"
    with pytest.raises(DatasetPreparationError,
                       match=rf"imagelabels.mat: label {re.escape(shown)} of image 3 is not a class number "
                             rf"1\.\.102") as err:
        prepare_oxford(jpg, mat, reed, out, **QUIET)
    _one_line(err)
    _nothing_written(tmp_path, out)


def test_oxford_labels_that_are_not_numbers_or_too_many(oxford_downloads, tmp_path):
    from scipy.io import savemat
    jpg, mat, reed = oxford_downloads
    savemat(mat, {"labels": np.array(["a flower"])})
    with pytest.raises(DatasetPreparationError, match=r"imagelabels.mat: 'labels' holds text data"):
        prepare_oxford(jpg, mat, reed, tmp_path / "out", **QUIET)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = np.ones(3)
    savemat(mat, {"labels": cell})
    with pytest.raises(DatasetPreparationError, match=r"imagelabels.mat: 'labels' holds cell data"):
        prepare_oxford(jpg, mat, reed, tmp_path / "out", **QUIET)
    # more labels than the 5-digit image_XXXXX.jpg names allow; compressed, checked before loading
    savemat(mat, {"labels": np.ones((1, 100_000), np.uint8)}, do_compression=True)
    with pytest.raises(DatasetPreparationError,
                       match=r"imagelabels.mat: 'labels' holds 100,000 values; at most 99,999"):
        prepare_oxford(jpg, mat, reed, tmp_path / "out", **QUIET)
    _nothing_written(tmp_path, tmp_path / "out")


def test_oxford_labels_inflating_past_their_shape(oxford_downloads, tmp_path):
    jpg, mat, reed = oxford_downloads
    mat_with_inflating_labels(mat, OXFORD_LABELS, declared=64 * 2**20)
    assert mat.stat().st_size < 200_000
    with pytest.raises(DatasetPreparationError,
                       match=r"imagelabels.mat: a compressed variable inflates to more than "
                             r"16,777,216 bytes") as err:
        prepare_oxford(jpg, mat, reed, tmp_path / "out", **QUIET)
    _one_line(err)
    _nothing_written(tmp_path, tmp_path / "out")
    # a compressed file as MATLAB writes it is fine
    from scipy.io import savemat
    savemat(mat, {"labels": np.array([OXFORD_LABELS], dtype=float)}, do_compression=True)
    assert len(prepare_oxford(jpg, mat, reed, tmp_path / "out", **QUIET)["warnings"]) == 0


# ------------------------------------------------------------------------------- 3. archives
def test_tgz_with_a_1_gib_member_is_refused_before_extracting_it(cub_downloads, tmp_path):
    cub, reed = cub_downloads
    member = "CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg"
    tgz = tgz_with_zero_member(cub, tmp_path / "CUB_200_2011.tgz", member)
    assert tgz.stat().st_size < 2 * 2**20
    out = tmp_path / "out"
    with pytest.raises(DatasetPreparationError,
                       match=rf"CUB_200_2011.tgz: member '{member}' would unpack to 1,073,741,824 "
                             rf"bytes, over the limit of 104,857,600 for one file") as err:
        prepare_cub(tgz, reed, out, **QUIET)
    _one_line(err)
    _nothing_written(tmp_path, out)


def test_zip_member_over_the_limit_is_refused(cub_downloads, tmp_path, monkeypatch):
    cub, reed = cub_downloads
    monkeypatch.setattr(real_datasets, "MAX_MEMBER_BYTES", 2000)   # the other files are < 1000
    big = reed / "text_c10" / "002.Laysan_Albatross" / "Laysan_Albatross_0044_784.txt"
    big.write_text(big.read_text() * 8)
    archive = make_zip(reed, tmp_path / "cvpr2016_cub.zip")
    with pytest.raises(DatasetPreparationError,
                       match=r"cvpr2016_cub.zip: member 'cvpr2016_cub/text_c10/002.Laysan_Albatross/"
                             r"Laysan_Albatross_0044_784.txt' would unpack to 5,120 bytes, over "
                             r"the limit of 2,000 for one file"):
        prepare_cub(cub, archive, tmp_path / "out", **QUIET)
    _nothing_written(tmp_path, tmp_path / "out")


def test_archive_over_the_total_budget_is_refused(cub_downloads, tmp_path, monkeypatch):
    cub, reed = cub_downloads
    tgz = make_tgz(cub, tmp_path / "CUB_200_2011.tgz")
    with tarfile.open(tgz) as tf:
        sizes = [m.size for m in tf.getmembers() if m.name.endswith(".jpg")]
    monkeypatch.setattr(real_datasets, "MAX_EXTRACT_BYTES", sum(sizes) - 1)
    with pytest.raises(DatasetPreparationError,
                       match=rf"CUB_200_2011.tgz: the files to extract add up to more than "
                             rf"{sum(sizes) - 1:,} bytes at member 'CUB_200_2011/images/"):
        prepare_cub(tgz, reed, tmp_path / "out", **QUIET)
    _nothing_written(tmp_path, tmp_path / "out")
    # the same budget for a zip archive, checked on its directory before anything is extracted
    archive = make_zip(cub, tmp_path / "CUB_200_2011.zip")
    with pytest.raises(DatasetPreparationError, match=r"CUB_200_2011.zip: the files to extract add up"):
        prepare_cub(archive, reed, tmp_path / "out", **QUIET)
    _nothing_written(tmp_path, tmp_path / "out")


# --------------------------------------------------------------------------------- 4. images
def test_144_megapixel_png_named_jpg_is_not_decoded(oxford_downloads, tmp_path):
    jpg, mat, reed = oxford_downloads
    bomb = uniform_png(12_000, 12_000)
    assert len(bomb) < 300_000
    (jpg / "image_00002.jpg").write_bytes(bomb)
    out = tmp_path / "out"
    with pytest.raises(DatasetPreparationError,
                       match=r"jpg/image_00002.jpg: refusing to decode this image: 12000x12000 "
                             r"pixels \(144 megapixels\), over the limit of 40 megapixels") as err:
        prepare_oxford(jpg, mat, reed, out, **QUIET)
    _one_line(err)
    _nothing_written(tmp_path, out)


def test_image_over_the_project_limit_in_an_archive(oxford_downloads, tmp_path):
    jpg, mat, reed = oxford_downloads
    # 50 megapixels: under PIL's own default limit (89 MP), over the 40 MP this project accepts
    (jpg / "image_00005.jpg").write_bytes(uniform_png(10_000, 5_000))
    tgz = make_tgz(jpg, tmp_path / "102flowers.tgz")
    out = tmp_path / "out"
    with pytest.raises(DatasetPreparationError,
                       match=r"102flowers.tgz:jpg/image_00005.jpg: refusing to decode this image: "
                             r"10000x5000 pixels \(50 megapixels\), over the limit of 40 megapixels"):
        prepare_oxford(tgz, mat, reed, out, **QUIET)
    _nothing_written(tmp_path, out)


# ------------------------------------------------------------------------------------ CLI
def test_cli_exits_2_with_one_line(oxford_downloads, cub_downloads, tmp_path, capsys):
    from scipy.io import savemat
    jpg, mat, reed = oxford_downloads
    savemat(mat, {"labels": np.array([[1, 2, 3_000_000, 3, 2, 3, 1]], dtype=float)})
    out = tmp_path / "oxford"
    assert _load_script("prepare_oxford").main(
        ["--images", str(jpg), "--labels", str(mat), "--captions", str(reed), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {mat}: label 3000000 of image 3 is not a class number 1..102")
    _nothing_written(tmp_path, out)

    cub, _ = cub_downloads
    birds = make_attngan_birds(tmp_path, TRAIN_KEYS, TEST_KEYS)
    (birds / "test" / "filenames.pickle").write_bytes(shared_reference_pickle())
    out = tmp_path / "cub"
    assert _load_script("prepare_cub").main(
        ["--cub", str(cub), "--captions", str(birds), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test/filenames.pickle: refused: the pickle expands" in err
    _nothing_written(tmp_path, out)
