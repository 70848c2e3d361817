import os

import pytest

from fpfast.io.sources import FileRef, SourceSpecError, check_sources, expand_braces, iter_sources
from io_helpers import encode, rand_rgb


@pytest.fixture
def tree(tmp_path):
    for rel in ["b/2.png", "b/10.png", "a/z.jpg", "a/sub/y.webp", "top.png", "notes.txt", "a/meta.json"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(encode(rand_rgb(20, 20)) if rel.endswith(".png") else b"x")
    return tmp_path


def rel(items, root):
    return [os.path.relpath(k, root) for k, _ in items]


def test_folder_recursive_sorted_images_only(tree):
    assert rel(iter_sources([str(tree)]), tree) == ["top.png", "a/z.jpg", "a/sub/y.webp", "b/10.png", "b/2.png"] \
        or rel(iter_sources([str(tree)]), tree) == ["a/z.jpg", "a/sub/y.webp", "b/10.png", "b/2.png", "top.png"]


def test_folder_order_is_stable(tree):
    a = rel(iter_sources([str(tree)]), tree)
    assert a == rel(iter_sources([str(tree)]), tree)
    # files of a folder come before its subfolders; names sorted at each level
    assert a == ["top.png", "a/z.jpg", "a/sub/y.webp", "b/10.png", "b/2.png"]


def test_glob_sorted(tree):
    assert rel(iter_sources([str(tree / "b" / "*.png")]), tree) == ["b/10.png", "b/2.png"]
    assert rel(iter_sources([str(tree / "**" / "*.png")]), tree) == ["b/10.png", "b/2.png", "top.png"]


def test_glob_matching_nothing_is_a_usage_error(tree):
    with pytest.raises(SourceSpecError, match="no files match"):
        list(iter_sources([str(tree / "*.gif")]))
    with pytest.raises(SourceSpecError):
        check_sources([str(tree / "*.gif")])
    with pytest.raises(SourceSpecError, match="list file"):
        check_sources(["@/nonexistent/list.txt"])


def test_list_file_keeps_its_order_and_missing_is_an_error_item(tree):
    lst = tree / "l.txt"
    lst.write_text(f"{tree}/top.png\n{tree}/missing.png\n{tree}/b/2.png\n", encoding="utf-8")
    items = list(iter_sources([f"@{lst}"]))
    assert rel(items, tree) == ["top.png", "missing.png", "b/2.png"]
    assert isinstance(items[0][1], FileRef)
    assert items[1][1].message == "no such file"


def test_sources_concatenate_in_argument_order(tree):
    items = list(iter_sources([str(tree / "top.png"), str(tree / "b")]))
    assert rel(items, tree) == ["top.png", "b/10.png", "b/2.png"]


def test_missing_literal_path_is_an_error_item(tree):
    items = list(iter_sources([str(tree / "gone.png")]))
    assert len(items) == 1 and "no such file" in items[0][1].message


def test_expand_braces():
    assert expand_braces("s/{0000..0002}.tar") == ["s/0000.tar", "s/0001.tar", "s/0002.tar"]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert expand_braces("{8..11}") == ["8", "9", "10", "11"]
    assert expand_braces("x{y}z") == ["x{y}z"]


def test_literal_braces_in_existing_name(tmp_path):
    p = tmp_path / "odd{1..2}.png"
    p.write_bytes(encode(rand_rgb(20, 20)))
    assert [k for k, _ in iter_sources([str(p)])] == [str(p)]
