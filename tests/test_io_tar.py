import io
import os
import tarfile

from fpfast.io.sources import SourceError, iter_sources
from fpfast.io.writers import read_rows
from fpfast.jobs.mappers import fingerprint_mapper
from fpfast.pipeline import run
from io_helpers import encode, rand_rgb


def make_tar(path, members, mode="w"):
    with tarfile.open(path, mode, format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def shard_members(s, n=3):
    out = []
    for j in range(n):
        out.append((f"{s:04d}_{j}.png", encode(rand_rgb(20, 20, seed=10 * s + j))))
        out.append((f"{s:04d}_{j}.json", b"{}"))  # a webdataset sidecar: skipped
    return out


def test_brace_range_of_shards_in_order(tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    for s in range(3):
        make_tar(d / f"{s:04d}.tar", shard_members(s))
    items = list(iter_sources([str(d / "{0000..0002}.tar")]))
    assert [k for k, _ in items] == [f"{d}/{s:04d}.tar/{s:04d}_{j}.png" for s in range(3) for j in range(3)]
    assert all(isinstance(p, bytes) for _, p in items)


def test_corrupt_member_header_one_error_row_and_the_rest_read(tmp_path):
    p = tmp_path / "a.tar"
    make_tar(p, [(f"m{j}.png", encode(rand_rgb(20, 20, seed=j))) for j in range(4)])
    with tarfile.open(p) as tf:
        off = tf.getmember("m1.png").offset
    raw = bytearray(p.read_bytes())
    raw[off:off + 100] = os.urandom(100)  # the name field and mode: checksum fails
    p.write_bytes(bytes(raw))
    items = list(iter_sources([str(p)]))
    keys = [k for k, _ in items]
    assert keys == [f"{p}/m0.png", f"{p}/@{off}", f"{p}/m2.png", f"{p}/m3.png"]
    assert isinstance(items[1][1], SourceError) and "damaged" in items[1][1].message
    out = tmp_path / "out"
    s = run([str(p)], fingerprint_mapper(), str(out), shard_size=2, batch_size=2, quiet=True)
    rows = read_rows(str(out))
    assert len(rows) == 4 and [r["path"] for r in rows] == keys
    assert [bool(r["error"]) for r in rows] == [False, True, False, False]
    assert s.exit_code == 3


def test_truncated_shard_last_member_is_an_error(tmp_path):
    p = tmp_path / "cut.tar"
    make_tar(p, [(f"m{j}.png", encode(rand_rgb(30, 30, seed=j))) for j in range(3)])
    with tarfile.open(p) as tf:
        last = tf.getmember("m2.png")
    raw = p.read_bytes()[: last.offset_data + last.size // 2]
    p.write_bytes(raw)
    items = list(iter_sources([str(p)]))
    assert [k for k, _ in items] == [f"{p}/m{j}.png" for j in range(3)]
    assert isinstance(items[2][1], SourceError) and "truncated" in items[2][1].message


def test_member_that_is_not_an_image(tmp_path):
    p = tmp_path / "b.tar"
    make_tar(p, [("x.png", b"garbage" * 10), ("y.png", encode(rand_rgb(20, 20)))])
    out = tmp_path / "out"
    run([str(p)], fingerprint_mapper(), str(out), shard_size=2, quiet=True)
    rows = read_rows(str(out))
    assert "not an image" in rows[0]["error"] and rows[1]["error"] is None


def test_unreadable_tar_is_one_error_row(tmp_path):
    p = tmp_path / "junk.tar"
    p.write_bytes(os.urandom(1500))
    items = list(iter_sources([str(p)]))
    assert len(items) == 1 and isinstance(items[0][1], SourceError)


def make_tar_gz(path, members):
    make_tar(path, members, "w:gz")


def test_gzip_shards_are_read_with_the_read_cap_and_error_rows(tmp_path):
    """.tar.gz / .tgz shards (as the webdataset library writes them) are read; a member over
    --max-bytes is an error row and is not read; a cut stream is one error row, the run goes on."""
    big = encode(rand_rgb(40, 40, seed=9))
    make_tar_gz(tmp_path / "a.tar.gz", shard_members(0, n=2) + [("big.png", big)])
    make_tar_gz(tmp_path / "b.tgz", shard_members(1, n=2))
    raw = (tmp_path / "b.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(raw[:len(raw) // 2])
    srcs = [str(tmp_path / "a.tar.gz"), str(tmp_path / "b.tgz"), str(tmp_path / "cut.tgz")]
    items = list(iter_sources(srcs, max_bytes=len(big) - 1))
    keys = [k for k, _ in items]
    assert keys[:5] == [f"{tmp_path}/a.tar.gz/0000_0.png", f"{tmp_path}/a.tar.gz/0000_1.png",
                        f"{tmp_path}/a.tar.gz/big.png", f"{tmp_path}/b.tgz/0001_0.png", f"{tmp_path}/b.tgz/0001_1.png"]
    assert isinstance(items[2][1], SourceError) and "--max-bytes" in items[2][1].message
    assert all(isinstance(p, SourceError) for _, p in items[5:]) and len(items) >= 6
    assert any("damaged" in p.message for _, p in items[5:])
    out = tmp_path / "out.parquet"
    s = run(srcs, fingerprint_mapper(), str(out), batch_size=2, quiet=True, max_bytes=len(big) - 1)
    rows = read_rows(str(out))
    assert [r["path"] for r in rows] == keys
    assert [r["error"] is None for r in rows[:5]] == [True, True, False, True, True]
    assert s.exit_code == 3


def damage_second_header(members) -> bytes:
    """A plain tar of ``members`` whose second member header is corrupt, and that header's offset."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    off = 512 + (len(members[0][1]) + 511) // 512 * 512
    raw[off + 100:off + 108] = b"garbage!"  # the mode field: the header checksum no longer matches
    return bytes(raw), off


def test_damaged_header_key_is_its_byte_offset_in_plain_and_gzip_shards(tmp_path):
    """Both kinds key a damaged stretch ``shard/@<byte offset in the tar>`` (a gzip shard: of its
    decompressed tar); a gzip shard cannot resync, so its damage is one error row and the rest is
    lost - not silently dropped (the stream used to stop there without an error row)."""
    import gzip
    members = [(f"m{j}.png", encode(rand_rgb(20, 20, seed=j))) for j in range(4)]
    raw, off = damage_second_header(members)
    (tmp_path / "d.tar").write_bytes(raw)
    (tmp_path / "d.tgz").write_bytes(gzip.compress(raw))
    plain = [k for k, _ in iter_sources([str(tmp_path / "d.tar")])]
    assert plain == [f"{tmp_path}/d.tar/m0.png", f"{tmp_path}/d.tar/@{off}", f"{tmp_path}/d.tar/m2.png",
                     f"{tmp_path}/d.tar/m3.png"]
    items = list(iter_sources([str(tmp_path / "d.tgz")]))
    assert [k for k, _ in items] == [f"{tmp_path}/d.tgz/m0.png", f"{tmp_path}/d.tgz/@{off}"]
    assert "after member 'm0.png'" in items[1][1].message and "rest of the shard is lost" in items[1][1].message
    assert gzip.decompress((tmp_path / "d.tgz").read_bytes())[off:off + 512] == raw[off:off + 512]  # where the key says


def test_gzip_member_cut_short_is_keyed_by_the_member(tmp_path):
    """A gzip shard cut inside a member's data: that member's row carries the error (the rest of
    the shard is lost), the members before it are read."""
    members = [(f"m{j}.png", encode(rand_rgb(64, 64, seed=j))) for j in range(3)]  # noise: stored, not deflated
    make_tar_gz(tmp_path / "a.tgz", members)
    raw = (tmp_path / "a.tgz").read_bytes()
    m1_data = 512 + (len(members[0][1]) + 511) // 512 * 512 + 512  # its offset in the tar ~ in the gzip file
    (tmp_path / "a.tgz").write_bytes(raw[:m1_data + 1000])
    items = list(iter_sources([str(tmp_path / "a.tgz")]))
    assert [k for k, _ in items] == [f"{tmp_path}/a.tgz/m0.png", f"{tmp_path}/a.tgz/m1.png"]
    assert isinstance(items[0][1], bytes)
    assert "damaged in this member" in items[1][1].message and "rest of the shard is lost" in items[1][1].message
