"""Every file nrf-nir writes goes through here: all or nothing, never through a symlink.

- :func:`atomic_path` / :func:`write_atomic`: one file. The content is written to a temporary
  file beside the target (``.nrf-nir-<name>.<random>.tmp``), flushed to disk (fsync), given
  the mode ``open()`` would give (``0o666 & ~umask`` for a new file, the old mode when
  replacing one) and renamed over the target.
- :func:`atomic_folder`: several files (deploy artifacts, a conformance report). They are
  built in a temporary folder and moved into the target folder only when all are written.

Both refuse a target that is a symbolic link (never followed nor replaced), a directory where
a file goes, or a special file; every ``OSError`` (full disk, read-only file system, no
permission, name too long, ...) becomes a one-line :class:`NIRError` ``cannot write: <reason>``
naming the file; and any failure, including ``KeyboardInterrupt`` and the CLI's
``Terminated``, removes what was written and the folders created for it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import NIRError

PathLike = str | os.PathLike[str]

#: Prefix and suffix of every temporary file or folder (the hostile-input tests look for them).
TMP_PREFIX = ".nrf-nir-"
TMP_SUFFIX = ".tmp"
#: Characters of the target's name kept in a temporary name (file names are limited to 255).
_NAME_KEEP = 100


def cannot_write(exc: OSError, path: PathLike) -> NIRError:
    """A one-line ``cannot write: <reason>`` error naming ``path``."""
    if exc.errno:
        reason = os.strerror(exc.errno)
    else:
        reason = " ".join(str(exc).split()) or type(exc).__name__
    return NIRError(f"cannot write: {reason}", file=str(path))


def umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``) where possible."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)  # fallback: a brief change (only where /proc is missing)
    os.umask(old)
    return old


def _mode_for(existing: os.stat_result | None) -> int:
    """Permission bits ``open(path, "w")`` would leave: the replaced file's, else from umask."""
    if existing is not None:
        return stat.S_IMODE(existing.st_mode) & 0o777
    return 0o666 & ~umask()


def _lstat(path: Path, shown: PathLike) -> os.stat_result | None:
    """``os.lstat(path)`` (the link itself, never followed); None when nothing is there."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise cannot_write(exc, shown) from None


def _check_file_target(path: Path, shown: PathLike) -> os.stat_result | None:
    """Refuse a symlink, a directory or a special file at ``path``; its lstat if it exists."""
    st = _lstat(path, shown)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise NIRError("is a symbolic link; refusing to write through it", file=str(shown))
    if stat.S_ISDIR(st.st_mode):
        raise NIRError("is a directory, not a file", file=str(shown))
    if not stat.S_ISREG(st.st_mode):
        raise NIRError("is not a regular file; refusing to replace it", file=str(shown))
    return st


def _check_folder_target(path: Path, shown: PathLike) -> bool:
    """Refuse anything but a directory (or a symlink to one) at ``path``; whether it exists."""
    st = _lstat(path, shown)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        if os.path.isdir(path):
            return True  # a symlink to a folder is used as that folder
        raise NIRError("is a symbolic link; refusing to write through it", file=str(shown))
    if not stat.S_ISDIR(st.st_mode):
        raise NIRError("exists and is not a directory", file=str(shown))
    return True


def _nearest_existing(path: Path, shown: PathLike) -> Path:
    """The closest ancestor of ``path`` that exists; it must be a directory."""
    here = path.parent
    while not os.path.lexists(here) and here != here.parent:
        here = here.parent
    if not os.path.isdir(here):
        raise cannot_write(OSError(errno.ENOTDIR, "Not a directory"), shown)
    return here


def _check_writable(folder: Path, shown: PathLike) -> None:
    """Refuse early when ``folder`` is on a read-only file system or not writable."""
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise cannot_write(OSError(errno.EROFS, ""), shown)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise cannot_write(OSError(errno.EACCES, ""), shown)


def check_output_file(path: PathLike) -> None:
    """The refusals of :func:`atomic_path`, before any work: a symlink, a directory or a
    special file at ``path``, a parent that is a file, a read-only or unwritable folder."""
    target = Path(os.path.abspath(path))
    _check_file_target(target, path)
    folder = target.parent if os.path.isdir(target.parent) else _nearest_existing(target, path)
    _check_writable(folder, path)


def check_output_folder(path: PathLike, names: Iterable[str] = ()) -> None:
    """The refusals of :func:`atomic_folder`, before any work: ``path`` must be a folder (or
    absent, then creatable); each of ``names`` in it must not be a symlink or a directory."""
    target = Path(os.path.abspath(path))
    if _check_folder_target(target, path):
        for name in names:
            _check_file_target(target / name, Path(path) / name)
        _check_writable(target, path)
    else:
        _check_writable(_nearest_existing(target, path), path)


def _same_file(a: PathLike, b: PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def refuse_overwriting_inputs(output: PathLike, inputs: Iterable[PathLike | None], *,
                              field: str = "output", names: Iterable[str] = ()) -> None:
    """Refuse an ``output`` that is one of ``inputs`` (the same file, also through links).

    With ``names`` the output is a folder and each ``output/NAME`` is checked too.
    """
    files = [str(p) for p in inputs if p is not None and os.path.exists(p)]
    candidates = [Path(output), *(Path(output) / name for name in names)]
    for dest in candidates:
        if not os.path.exists(dest):
            continue
        for src in files:
            if _same_file(dest, src):
                raise NIRError(f"is the input file {src!r}; refusing to overwrite it",
                               file=str(dest), field=field)


def _make_parents(folder: Path, shown: PathLike) -> list[Path]:
    """Create the missing folders down to ``folder``; the ones created, deepest last."""
    missing = []
    here = folder
    while not os.path.lexists(here) and here != here.parent:
        missing.append(here)
        here = here.parent
    created: list[Path] = []
    try:
        for part in reversed(missing):
            os.mkdir(part)
            created.append(part)
    except OSError as exc:
        _remove_folders(created)
        raise cannot_write(exc, shown) from None
    return created


def _remove_folders(created: list[Path]) -> None:
    for part in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(part)  # only if still empty


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs directories
        _fsync(path)


def _tmp_name(name: str) -> str:
    return f"{TMP_PREFIX}{name[:_NAME_KEEP]}."


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while files are moved into place (delivered afterwards)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (OSError, ValueError):  # pragma: no cover - platforms without it
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it over ``path`` only on success.

    The caller writes the whole content to the yielded path. A failure of any kind (an
    exception, ``KeyboardInterrupt``, the CLI's ``Terminated``) removes the temporary file
    and the folders created for it; an ``OSError`` becomes ``NIRError("cannot write: ...")``.
    Refuses (``NIRError`` naming the file) a target that is a symlink, a directory or a
    special file.
    """
    target = Path(os.path.abspath(path))
    _check_file_target(target, path)
    created = _make_parents(target.parent, path)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_tmp_name(target.name), suffix=TMP_SUFFIX,
                                        dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        _fsync(tmp)
        existing = _check_file_target(target, path)  # again: it may have changed meanwhile
        os.chmod(tmp, _mode_for(existing))
        if existing is not None and (existing.st_uid, existing.st_gid) != (os.geteuid(),
                                                                           os.getegid()):
            with contextlib.suppress(OSError):  # keep the owner where we may (as root)
                os.chown(tmp, existing.st_uid, existing.st_gid)
        os.replace(tmp, target)
        tmp = None
        _fsync_folder(target.parent)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        _remove_folders(created)
        if isinstance(exc, NIRError):
            raise exc.with_file(str(path)) from None
        if isinstance(exc, OSError):
            raise cannot_write(exc, path) from None
        raise


def write_atomic(path: PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically (see
    :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf8"))


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def _commit_into(tmp: Path, target: Path, shown: PathLike, protect: list[str]) -> None:
    """Move every file of ``tmp`` into the existing folder ``target``, after checking them
    all: none may land on a symlink, a directory, a special file or a protected input."""
    moves = []
    for entry in sorted(os.listdir(tmp)):
        src, dest, named = tmp / entry, target / entry, Path(shown) / entry
        if not stat.S_ISREG(os.lstat(src).st_mode):
            raise NIRError("only files can be written into an output folder", file=str(named))
        existing = _check_file_target(dest, named)
        for inp in protect:
            if existing is not None and _same_file(dest, inp):
                raise NIRError(f"is the input file {inp!r}; refusing to overwrite it",
                               file=str(named))
        moves.append((src, dest, existing))
    for src, _, existing in moves:
        _fsync(src)
        os.chmod(src, _mode_for(existing))
    with _signals_held():
        for src, dest, _ in moves:
            os.replace(src, dest)
    _fsync_folder(target)


@contextlib.contextmanager
def atomic_folder(path: PathLike, *, protect: Iterable[PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder; move its files into the folder ``path`` only on success.

    The caller writes every file into the yielded folder. When ``path`` does not exist the
    temporary folder (``.nrf-nir-<name>.<random>.tmp/`` beside it) is renamed to ``path``;
    when it exists the temporary folder is made inside it (so the moves never cross file
    systems) and, once every destination is checked (no symlink, directory or one of the
    ``protect`` files), each file replaces its namesake. A refusal or a failure of any kind
    removes the temporary folder and the folders created for it: ``path`` is left as it was,
    and does not exist afterwards if it did not before. Errors as in :func:`atomic_path`.
    """
    target = Path(os.path.abspath(path))
    kept = [str(p) for p in protect if os.path.exists(p)]
    exists = _check_folder_target(target, path)
    created = [] if exists else _make_parents(target.parent, path)
    tmp: Path | None = None
    try:
        where = target if exists else target.parent
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_name(target.name), suffix=TMP_SUFFIX,
                                    dir=where))
        yield tmp
        exists = _check_folder_target(target, path)  # again: it may have appeared meanwhile
        if not exists:
            for entry in os.listdir(tmp):
                _fsync(tmp / entry)
                os.chmod(tmp / entry, _mode_for(None))
            os.chmod(tmp, 0o777 & ~umask())
            try:
                with _signals_held():
                    os.rename(tmp, target)
                tmp = None
                _fsync_folder(target.parent)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        if tmp is not None:
            _commit_into(tmp, target, path, kept)
            os.rmdir(tmp)
            tmp = None
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_folders(created)
        if isinstance(exc, OSError):
            raise cannot_write(exc, path) from None
        if isinstance(exc, NIRError) and tmp is not None:
            raise _name_final(exc, tmp, path) from None
        raise


def _name_final(exc: NIRError, tmp: Path, shown: PathLike) -> NIRError:
    """``exc`` naming, instead of a file in the temporary folder ``tmp`` (or in temporaries
    nested in it), the file it stands for in the folder ``shown``."""
    if exc.file is None:
        return exc
    try:
        parts = Path(os.path.abspath(exc.file)).relative_to(tmp).parts
    except ValueError:
        return exc
    kept = [p for p in parts if not (p.startswith(TMP_PREFIX) and p.endswith(TMP_SUFFIX))]
    exc.file = None
    return exc.with_file(str(Path(shown).joinpath(*kept)))
