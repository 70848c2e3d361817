"""The benchmarks' one long-format CSV writer (:func:`fpfast.bench.append_csv`)."""
from fpfast import bench


def test_append_csv_with_the_kernel_columns_or_the_first_rows(tmp_path):
    path = str(tmp_path / "r" / "ray.csv")
    rows = [{"config": "--workers 2", "images_per_s": 449.0123456, "stages": "read 0.39s, decode 53.40s"}]
    bench.append_csv(rows, path, columns=None)  # the columns of the first row (the stream and Ray benchmarks)
    bench.append_csv(rows, path, columns=None)  # appends: one header
    got = bench.read_csv(path)
    assert got == [{"config": "--workers 2", "images_per_s": "449.012", "stages": "read 0.39s, decode 53.40s"}] * 2
    k = str(tmp_path / "k.csv")
    bench.append_csv([{**{c: 1 for c in bench.COLUMNS}, "extra": "dropped"}], k)  # the kernel benchmarks' columns
    assert list(bench.read_csv(k)[0]) == bench.COLUMNS


def test_append_csv_keeps_an_existing_files_header(tmp_path):
    """Rows whose keys changed since the file was started land under the file's own columns."""
    path = str(tmp_path / "s.csv")
    bench.append_csv([{"a": 1, "b": 2}], path, columns=None)
    bench.append_csv([{"b": 3, "c": 4, "a": 5}], path, columns=None)
    assert bench.read_csv(path) == [{"a": "1", "b": "2"}, {"a": "5", "b": "3"}]
