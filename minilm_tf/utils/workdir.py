"""A run's work directory: resolved, checked, locked and kept clean.

Every tool that writes a directory of results (distillation, fine-tuning,
the study, the exports) opens it with `hold(path)`:

    with workdir.hold(path) as wd:
        ...  # wd.root is the resolved path; wd.path("metrics.csv") joins safely

which

- creates the directory (a path that is a file, or a directory that cannot
  be written, is a clear error);
- refuses symbolic links inside it that point outside it (`metrics.csv ->
  /elsewhere`, `checkpoints -> /elsewhere`, ...), naming the entry, so a run
  never writes or appends outside its directory; links that stay inside are
  fine, and the directory itself may be a link (it is resolved first);
- holds an exclusive lock (`fcntl.flock` on `.workdir.lock` inside it,
  holding the pid and start time) for as long as the block runs: a second
  run on the same directory fails with "another run (pid N, started T)
  holds ...". The kernel releases a flock when its process dies, so a lock
  file left behind by a killed run never blocks the next one; a finished
  run removes its lock file;
- removes temporary files that a killed or failed write left behind:
  `ckpt-N_temp/` shard directories of `tf.train.Checkpoint`, TensorFlow's
  `checkpoint.tmp*` index files, and the `.tmp-*` / `.NAME.tmp-*` /
  `.NAME.old-*` names of `minilm_tf.utils.fileio`'s atomic writes, in the
  directory and in the subdirectories the caller names (its checkpoint
  directories). `minilm_tf.training.checkpointing.save_checkpoint` calls
  `remove_temporaries` after each checkpoint write, failed or not.

Holding is re-entrant within a process (fine-tuning's QA path opens the
directory its caller already holds). The module uses the standard library
only.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import fnmatch
import glob
import json
import logging
import os
import shutil
import sys
from typing import Iterator, Sequence

logger = logging.getLogger(__name__)

LOCK_FILE = ".workdir.lock"

# Names that only ever hold an unfinished write (see the module doc).
_TEMP_FILES = (".tmp-*", ".tmp_*", "checkpoint.tmp*", ".*.tmp-*")
_TEMP_DIRS = (".tmp-*", ".*.tmp-*", ".*.old-*", "ckpt-*_temp")


class WorkdirError(ValueError):
    """The work directory cannot be used as it is; the message says why."""


class WorkdirInUse(WorkdirError):
    """Another live process holds the work directory's lock."""


def create(path: str) -> str:
    """Creates `path` if needed and returns it resolved; clear errors when it
    is a file or cannot be written."""
    path = os.path.realpath(os.path.abspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{path} exists and is a file; pass a directory.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"Cannot create {path}: {e.strerror}.") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{path} is not writable; choose another directory.")
    return path


def _inside(root: str, target: str) -> bool:
    return os.path.commonpath([root, target]) == root


def check_links(root: str) -> None:
    """Refuses any symbolic link under `root` whose target is outside it."""
    for directory, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            entry = os.path.join(directory, name)
            if os.path.islink(entry) and not _inside(root, os.path.realpath(entry)):
                relative = os.path.relpath(entry, root)
                raise WorkdirError(
                    f"{relative} in the work directory {root} is a symbolic link to "
                    f"{os.readlink(entry)}, outside the directory; remove the link (outputs "
                    "are written inside the work directory only) or use another workdir."
                )


def is_temporary(name: str, is_dir: bool) -> bool:
    """Whether `name` is the leftover of an unfinished write (see the module doc)."""
    return name != LOCK_FILE and any(
        fnmatch.fnmatch(name, p) for p in (_TEMP_DIRS if is_dir else _TEMP_FILES))


def remove_temporaries(directory: str, of: str | None = None) -> list[str]:
    """Deletes the leftovers of unfinished writes directly in `directory`
    (see the module doc), or with `of`, only those of
    `fileio.atomic_directory(directory/of)`; returns their paths. Links are
    removed, never followed."""
    removed = []
    own = (f".{glob.escape(of)}.tmp-*", f".{glob.escape(of)}.old-*") if of else None
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        is_dir = entry.is_dir(follow_symlinks=False)
        if not (any(fnmatch.fnmatch(entry.name, p) for p in own) if own
                else is_temporary(entry.name, is_dir)):
            continue
        with contextlib.suppress(FileNotFoundError):
            if is_dir:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        removed.append(entry.path)
    if removed:
        logger.warning("Removed leftovers of unfinished writes: %s", ", ".join(removed))
    return removed


def _describe_holder(lock_path: str) -> str:
    try:
        with open(lock_path, encoding="utf-8") as f:
            info = json.load(f)
        return f"pid {info['pid']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown: it is still starting"


class _Lock:
    """An exclusive flock on `path`, which holds the owner's pid and start
    time while it is held and is removed on release."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def acquire(self, what: str) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644)
            except OSError as e:
                raise WorkdirError(f"Cannot open the lock file {self.path} ({e.strerror}); "
                                   "remove it if it is not a regular file.") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise WorkdirInUse(
                    f"another run ({_describe_holder(self.path)}) holds {what}; wait for it "
                    "to finish, or use another directory."
                ) from None
            # A finished run unlinks its lock file while holding it; a lock
            # taken on such an unlinked file means nothing: open it again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = os.read(fd, 4096)
        if stale:
            logger.info("Recovered a lock left by a run that no longer exists: %s",
                        stale.decode("utf-8", "replace").strip())
        info = {
            "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": sys.argv,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


class Workdir:
    """A held work directory (see `hold`)."""

    def __init__(self, root: str):
        self.root = root

    def path(self, *parts: str) -> str:
        """`root/parts...`, refusing a result outside the directory (`../x`,
        or through a link that leads outside)."""
        target = os.path.realpath(os.path.join(self.root, *parts))
        if not _inside(self.root, target):
            raise WorkdirError(
                f"Output path {os.path.join(*parts)!r} escapes the work directory {self.root}."
            )
        return os.path.join(self.root, *parts)

    def remove_temporaries(self, *subdirs: str) -> list[str]:
        """`remove_temporaries` in each of `subdirs` (glob patterns relative
        to the root, e.g. `checkpoints`; "" is the root)."""
        removed = []
        for pattern in subdirs:
            for directory in sorted(glob.glob(os.path.join(glob.escape(self.root), pattern))):
                if os.path.isdir(directory) and not os.path.islink(directory):
                    removed += remove_temporaries(directory)
        return removed


_held: dict[str, int] = {}  # lock path -> how many times this process holds it


@contextlib.contextmanager
def exclusive(lock_path: str, what: str) -> Iterator[None]:
    """Holds the lock file `lock_path` for the block (re-entrant within a
    process). `what` names the locked thing in the error of a second run."""
    lock_path = os.path.abspath(lock_path)
    if lock_path in _held:
        _held[lock_path] += 1
        try:
            yield
        finally:
            _held[lock_path] -= 1
        return
    lock = _Lock(lock_path)
    lock.acquire(what)
    _held[lock_path] = 1
    try:
        yield
    finally:
        del _held[lock_path]
        lock.release()


@contextlib.contextmanager
def hold(path: str, *, temporaries_in: Sequence[str] = ("",), lock_file: str = LOCK_FILE,
         what: str | None = None) -> Iterator[Workdir]:
    """Creates, checks, locks and cleans the work directory `path` for the
    duration of the block (see the module doc).

    Args:
        path: the directory.
        temporaries_in: directories (glob patterns relative to `path`; "" is
            `path` itself) whose leftover temporary files are removed.
        lock_file: the lock's path relative to `path` (or absolute).
        what: how errors name the directory (default "the work directory P").

    Raises:
        NotADirectoryError, PermissionError: `path` is a file or not writable.
        WorkdirError: a link inside points outside it.
        WorkdirInUse: another process holds it.
    """
    root = create(path)
    check_links(root)
    with exclusive(os.path.join(root, lock_file), what or f"the work directory {root}"):
        workdir = Workdir(root)
        workdir.remove_temporaries(*temporaries_in)
        yield workdir
