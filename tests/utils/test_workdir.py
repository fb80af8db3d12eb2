"""minilm_tf.utils.workdir: links leading outside, the lock, leftover temporaries.

The tools' use of it (a second run refused, links refused before anything is
written) is in test_bad_input.py; these are the pieces in one process.
"""

import json
import os
import subprocess
import sys

import pytest

from minilm_tf.utils import workdir
from locations import REPO_ROOT


def test_links_leading_outside_are_refused_naming_the_entry(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "checkpoint").symlink_to(outside / "index")  # dangling, outside
    with pytest.raises(workdir.WorkdirError) as error:
        with workdir.hold(str(root)):
            pass
    message = str(error.value)
    assert message.startswith(f"checkpoints/checkpoint in the work directory {root} is a "
                              f"symbolic link to {outside / 'index'}, outside the directory")
    assert "\n" not in message
    assert not (root / workdir.LOCK_FILE).exists()  # refused before locking

    os.remove(root / "checkpoints" / "checkpoint")
    (root / "tensorboard").symlink_to(outside, target_is_directory=True)
    with pytest.raises(workdir.WorkdirError, match="^tensorboard in the work directory"):
        with workdir.hold(str(root)):
            pass


def test_links_inside_and_a_linked_workdir_are_fine(tmp_path):
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    (real / "alias").symlink_to(real / "data", target_is_directory=True)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with workdir.hold(str(link)) as held:
        assert held.root == str(real)  # resolved
        assert held.path("data", "x.json") == str(real / "data" / "x.json")
        with pytest.raises(workdir.WorkdirError, match="escapes the work directory"):
            held.path("..", "elsewhere")


def test_a_file_or_read_only_directory_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        workdir.create(str(target))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(str(locked), os.W_OK):  # root ignores permission bits
            pytest.skip("running as root: permission bits are not enforced")
        with pytest.raises(PermissionError, match="not writable"):
            workdir.create(str(locked))
    finally:
        locked.chmod(0o700)


_HOLDER = """
import sys, time
from minilm_tf.utils import workdir
with workdir.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_holder_is_refused_with_the_pid_and_a_dead_ones_lock_is_not(tmp_path):
    root = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(root)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        info = json.loads((root / workdir.LOCK_FILE).read_text())
        assert info["pid"] == holder.pid
        with pytest.raises(workdir.WorkdirInUse) as error:
            with workdir.hold(str(root)):
                pass
        assert str(error.value) == (
            f"another run (pid {holder.pid}, started {info['started']}) holds the work "
            f"directory {root}; wait for it to finish, or use another directory.")
    finally:
        holder.kill()  # SIGKILL: the lock file stays, the kernel drops the flock
        holder.wait()
    assert json.loads((root / workdir.LOCK_FILE).read_text())["pid"] == holder.pid
    with workdir.hold(str(root)):
        assert json.loads((root / workdir.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (root / workdir.LOCK_FILE).exists()  # a finished run removes its lock file


def test_holding_is_reentrant_in_one_process(tmp_path):
    with workdir.hold(str(tmp_path)):
        with workdir.hold(str(tmp_path)):
            pass
        assert (tmp_path / workdir.LOCK_FILE).exists()  # still held by the outer block
    assert not (tmp_path / workdir.LOCK_FILE).exists()


def test_leftover_temporaries_are_removed_and_nothing_else(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "ckpt-4_temp").mkdir(parents=True)
    (checkpoints / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    (checkpoints / "checkpoint.tmp0123abcd").write_text("partial")
    (checkpoints / "ckpt-2.index").write_bytes(b"kept")
    (checkpoints / "checkpoint").write_text("kept")
    (tmp_path / ".tmp-abc123").write_text("partial json")
    (tmp_path / ".student.tmp-xyz").mkdir()
    (tmp_path / ".student.old-xyz").mkdir()
    (tmp_path / "my_temp").mkdir()  # a user's name, not a checkpoint's
    (tmp_path / "notes.tmp").write_text("a user's file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".tmp-zzz").write_text("not in a named directory")
    with workdir.hold(str(tmp_path), temporaries_in=("", "checkpoints")):
        pass
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["checkpoints", "checkpoints/checkpoint", "checkpoints/ckpt-2.index",
                    "my_temp", "notes.tmp", "other", "other/.tmp-zzz"]


def test_remove_temporaries_of_one_directory(tmp_path):
    (tmp_path / ".model.tmp-1").mkdir()
    (tmp_path / ".other.tmp-1").mkdir()
    removed = workdir.remove_temporaries(str(tmp_path), of="model")
    assert removed == [str(tmp_path / ".model.tmp-1")]
    assert (tmp_path / ".other.tmp-1").exists()


def test_a_lock_file_that_is_a_link_is_an_error(tmp_path):
    (tmp_path / "target").write_text("")
    (tmp_path / workdir.LOCK_FILE).symlink_to(tmp_path / "target")
    with pytest.raises(workdir.WorkdirError, match="Cannot open the lock file"):
        with workdir.hold(str(tmp_path)):
            pass

