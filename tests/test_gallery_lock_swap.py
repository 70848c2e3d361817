"""The gallery lock across a save's directory swap: a second locker arriving mid-swap neither
creates a second lock file (two holders) nor fails on the briefly missing directory."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cli_helpers import ROOT, sub_env
from fpfast.gallery import store
from fpfast.io.lock import LOCK_NAME, LockedError, exclusive, lock_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock locks are POSIX")

# A holder that saves the gallery and pauses at its two directory renames: before renaming the
# old version away (until told to go on), and with no directory at `path` (for a fixed time).
HOLDER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from fpfast.gallery import store
    from fpfast.io.lock import exclusive, lock_path
    path, sig = sys.argv[1], sys.argv[2]
    real = os.rename
    def wait_for(name):
        while not os.path.exists(sig + name):
            time.sleep(0.01)
    def rename(a, b):
        if os.path.abspath(a) == path:
            open(sig + ".away", "w").close()
            wait_for(".go")
        if os.path.abspath(b) == path:
            open(sig + ".missing", "w").close()
            time.sleep(0.5)
        real(a, b)
    os.rename = rename
    with exclusive(lock_path(path), "gallery"):
        store.save_dir(path, {"v": 2}, {"a.npy": np.ones(3)}, {}, None, None)
        wait_for(".done")
""")


def _wait_for(p, proc):
    t = time.monotonic()
    while not os.path.exists(p):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t < 60, f"holder never reached {p}"
        time.sleep(0.01)


def _try_lock(g):
    with pytest.raises(LockedError):
        with exclusive(lock_path(g), "gallery", wait=False):
            pass


def test_a_locker_mid_swap_meets_the_holders_lock(tmp_path):
    g = str(tmp_path / "g")
    with exclusive(lock_path(g), "gallery"):
        store.save_dir(g, {"v": 1}, {"a.npy": np.zeros(3)}, {}, None, None)
    (tmp_path / "g" / "notes.txt").write_text("mine")
    sig = str(tmp_path / "sig")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, g, sig], cwd=ROOT, env=sub_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(sig + ".away", proc)   # the user's file has moved to the new version already
        _try_lock(g)
        assert sorted(os.listdir(g)).count(LOCK_NAME) == 1
        open(sig + ".go", "w").close()
        _wait_for(sig + ".missing", proc)
        assert not os.path.exists(g)
        _try_lock(g)                     # waited for the directory to come back, then met the lock
        assert os.path.isdir(g)
        open(sig + ".done", "w").close()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sorted(os.listdir(tmp_path)) == ["g", "sig.away", "sig.done", "sig.go", "sig.missing"]
    assert sorted(os.listdir(g)) == sorted([LOCK_NAME, "a.npy", "gallery.json", "notes.txt"])
    assert np.load(os.path.join(g, "a.npy")).tolist() == [1, 1, 1]
    with exclusive(lock_path(g), "gallery", wait=False):   # released with its holder
        pass


def test_a_failed_swap_puts_the_lock_file_back(tmp_path, monkeypatch):
    g = str(tmp_path / "g")
    with exclusive(lock_path(g), "gallery"):
        store.save_dir(g, {"v": 1}, {"a.npy": np.zeros(3)}, {}, None, None)
    inode = os.stat(lock_path(g)).st_ino
    real = os.rename

    def rename(a, b):
        if os.path.abspath(b) == g and os.path.basename(a).startswith(".g.tmp-"):
            raise OSError(28, "No space left on device")
        real(a, b)
    monkeypatch.setattr(os, "rename", rename)
    with exclusive(lock_path(g), "gallery"):
        with pytest.raises(OSError, match="No space"):
            store.save_dir(g, {"v": 2}, {"a.npy": np.ones(3)}, {}, None, None)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["g"]
    assert os.stat(lock_path(g)).st_ino == inode
    assert np.load(os.path.join(g, "a.npy")).tolist() == [0, 0, 0]


def test_a_waiter_outlives_the_directory_it_waited_on(tmp_path):
    """A first enrollment that fails removes the directory it made, lock file and all; the
    enrollment waiting on that lock makes the directory again and goes on."""
    g, sig = str(tmp_path / "g"), str(tmp_path / "sig")
    holder = textwrap.dedent("""
        import os, sys, time
        from fpfast.io.lock import exclusive, lock_path
        g, sig = sys.argv[1], sys.argv[2]
        with exclusive(lock_path(g), "gallery"):
            open(sig + ".held", "w").close()
            while not os.path.exists(sig + ".go"):
                time.sleep(0.01)
            os.remove(lock_path(g))
            os.rmdir(g)
    """)
    waiter = textwrap.dedent("""
        import os, sys
        from fpfast.io.lock import exclusive, lock_path
        with exclusive(lock_path(sys.argv[1]), "gallery"):
            print(os.listdir(sys.argv[1]))
    """)
    kw = dict(cwd=ROOT, env=sub_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hold = subprocess.Popen([sys.executable, "-c", holder, g, sig], **kw)
    try:
        _wait_for(sig + ".held", hold)
        wait = subprocess.Popen([sys.executable, "-c", waiter, g], **kw)
        assert "waiting for it to finish" in wait.stderr.readline()
        open(sig + ".go", "w").close()
        assert hold.wait(timeout=60) == 0, hold.communicate()
        out, err = wait.communicate(timeout=60)
        assert wait.returncode == 0, err
        assert out.strip() == repr([LOCK_NAME])
    finally:
        for p in (hold, locals().get("wait")):
            if p is not None and p.poll() is None:
                p.kill()


STRESS = textwrap.dedent("""
    import json, multiprocessing as mp, os, sys
    import numpy as np
    from fpfast.gallery import store
    from fpfast.io.lock import exclusive, lock_path, shared
    g, rounds = sys.argv[1], int(sys.argv[2])
    def read():
        with open(os.path.join(g, "gallery.json")) as fh:
            n = json.load(fh)["n"]
        assert len(np.load(os.path.join(g, "a.npy"))) == n, "a half-swapped gallery was read"
        return n
    def work(i):
        for _ in range(rounds):
            if i >= 4:   # two readers, under the shared lock
                with shared(lock_path(g)):
                    read()
                continue
            with exclusive(lock_path(g), "gallery"):
                n = read() + 1
                store.save_dir(g, {"n": n}, {"a.npy": np.zeros(n)}, {}, None, None)
    with mp.get_context("fork").Pool(6) as p:
        p.map(work, range(6))
""")


def test_concurrent_saves_lose_no_update(tmp_path):
    """Four processes each add one to the gallery 60 times under its lock while two read it under
    the shared lock: no update is lost, no reader sees a half-swapped gallery, and no old version
    is left behind (the lock file's move used to open a window for a second holder)."""
    g = str(tmp_path / "g")
    with exclusive(lock_path(g), "gallery"):
        store.save_dir(g, {"n": 0}, {"a.npy": np.zeros(0)}, {}, None, None)
    r = subprocess.run([sys.executable, "-c", STRESS, g, "60"], cwd=ROOT, env=sub_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(g, "gallery.json")) as fh:
        assert json.load(fh)["n"] == 240
    assert sorted(os.listdir(tmp_path)) == ["g"]


def test_a_save_killed_between_its_renames_is_reported_not_replaced(tmp_path):
    """A save killed after renaming the gallery away and before renaming the new version in leaves
    both beside the missing path: loading names them, and an enrollment refuses to start a new,
    empty gallery there (it would hide the user's models)."""
    from fpfast.gallery import Gallery, GalleryError
    from fpfast.gallery.update import updating
    g = tmp_path / "g"
    with exclusive(lock_path(str(g)), "gallery"):
        store.save_dir(str(g), {"v": 1}, {"a.npy": np.zeros(3)}, {}, None, None)
    new = tmp_path / ".g.tmp-x1"
    new.mkdir()
    (new / "gallery.json").write_text("{}")
    g.rename(tmp_path / ".g.old-y2")
    with pytest.raises(GalleryError, match=r"save of gallery .* was interrupted: .*\.g\.old-y2, .*\.g\.tmp-x1"):
        Gallery.load(str(g))
    with pytest.raises(GalleryError, match="rename the one to keep"):
        with updating(str(g)):
            pass
    from cli_helpers import invoke
    for cmd in (("attribute", str(tmp_path), "--gallery", g, "--out", tmp_path / "a.csv"), ("info", "--gallery", g)):
        r = invoke(*cmd)
        assert r.exit_code == 2 and "was interrupted" in r.output, r.output
    assert not g.exists()
    (tmp_path / ".g.old-y2").rename(g)   # restored: no message any more
    assert store.interrupted_save(str(g)) is None
