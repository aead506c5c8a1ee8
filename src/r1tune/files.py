"""Writing outputs so that no input and no earlier output is ever destroyed: one writer for every step.

    check_outputs([out, log], inputs=[inp])        # before anything is read or opened for writing
    with replaced(out) as f:                       # a hidden temporary file next to OUT (.OUT.tmp-XXXXXXXX) ...
        f.write(text)                              # ... renamed onto OUT only when the block ends without error
    write_text(path, text)                         # the same in one call (write_bytes for bytes)
    with OutputSet() as outputs:                   # files that belong together (a step's output and its log):
        data, log = outputs.open(out), outputs.open(log_path)   # all renamed at the end, none after an error
    with replaced_folder(out) as tmp:              # a folder (exports): built in OUT.partial, swapped in at the end

A crash, a full disk or an exception leaves the previous file (if any) untouched and no partial file under the
target's name. Every OSError on the way becomes one `R1TuneError` line naming the target: "PATH: no space left
on device", "PATH: is a directory, expected a file", "PATH: cannot write here (...)".
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from r1tune.errors import R1TuneError

# What a full disk says, in the words a user searches for (every other OSError: "cannot write here (...)").
_FULL = {errno.ENOSPC: "no space left on device", getattr(errno, "EDQUOT", -1): "disk quota exceeded",
         errno.EFBIG: "file too large for this file system"}
_BUFFER_BYTES = 1 << 16
_write, _fsync = os.write, os.fsync  # module names, so a test can make the disk full


def output_error(error: OSError, path: str | Path) -> R1TuneError:
    """The one-line error for an OSError met while writing `path`."""
    path = Path(path)
    if error.errno in _FULL:
        return R1TuneError(f"{path}: {_FULL[error.errno]}")
    if error.errno == errno.EISDIR or path.is_dir():
        return R1TuneError(f"{path}: is a directory, expected a file")
    blocker = _file_above(path)
    if blocker is not None:
        return R1TuneError(f"{path}: cannot write here ({blocker} is a file, not a folder)")
    reason = (error.strerror or str(error)).lower()
    return R1TuneError(f"{path}: cannot write here ({reason})")


def _file_above(path: Path) -> Path | None:
    """The first ancestor of `path` that exists and is not a folder (so nothing can be created under it)."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def check_outputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None] = (),
                  folders: Iterable[str | Path | None] = ()) -> None:
    """Refuse, before anything is opened for writing, an output that is one of the inputs (same path in any
    spelling, through a symlink, or a hard link), an output that is a folder or lies under a file, and a
    `folders` entry (a folder replaced whole) that holds an input."""
    given = [Path(p) for p in inputs if p is not None]
    resolved = [(p, p.resolve()) for p in given]
    for out in (Path(p) for p in outputs if p is not None):
        target = out.resolve()
        for inp, real in resolved:
            if target == real or (out.exists() and inp.exists() and os.path.samefile(out, inp)):
                shown = "" if str(inp) == str(out) else f" ({inp})"
                raise R1TuneError(f"{out}: is also the input{shown}; writing it would destroy the input — "
                                  "choose another output path")
        if out.is_dir():
            raise R1TuneError(f"{out}: is a directory, expected a file")
        blocker = _file_above(out)
        if blocker is not None:
            raise R1TuneError(f"{out}: cannot write here ({blocker} is a file, not a folder)")
    for folder in (Path(p) for p in folders if p is not None):
        real_folder = folder.resolve()
        for inp, real in resolved:
            if real == real_folder or real_folder in real.parents:
                raise R1TuneError(f"{folder}: is replaced as a whole, but the input {inp} is in it — "
                                  "choose another output folder")


class _OutputBytes(io.FileIO):
    """The temporary file's raw layer: its write errors name the target, and closing it after a complete
    write fsyncs it (a rename then never exposes a file whose content is still only in memory)."""

    target: Path
    discarded = False

    def write(self, data):
        try:
            return _write(self.fileno(), data)
        except OSError as e:
            raise output_error(e, self.target) from e

    def close(self) -> None:
        if not self.closed and not self.discarded:
            try:
                _fsync(self.fileno())
            except OSError as e:
                super().close()
                raise output_error(e, self.target) from e
        super().close()


class OutputSet:
    """Output files that appear together or not at all: each is written to a hidden temporary file beside its
    target; `commit` flushes and fsyncs them all, then renames each onto its target in the order opened;
    `discard` (or an exception in the `with` block) removes the temporary files and leaves the targets as they
    were. Renaming after every file is safely on disk means a full disk or a crash never leaves a new file next
    to an old one it belongs with."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, io.IOBase, _OutputBytes]] = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def open(self, path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
        """A writable file object for `path` ("w" text or "wb" bytes); the set closes it."""
        if mode not in ("w", "wb"):
            raise ValueError(f"an output is opened with 'w' or 'wb', not {mode!r}")
        target = Path(path)
        if target.is_symlink():  # write through the link, as open(path, "w") does
            target = Path(os.path.realpath(target))
        if target.is_dir():
            raise R1TuneError(f"{path}: is a directory, expected a file")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(e, path) from e
        fd, temp = _create_beside(target, path)
        try:
            if target.exists():  # keep the permissions of the file being replaced
                os.fchmod(fd, target.stat().st_mode & 0o7777)
            raw = _OutputBytes(fd, "w")
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        raw.target = Path(path)
        handle = io.BufferedWriter(raw, _BUFFER_BYTES)
        if mode == "w":
            handle = io.TextIOWrapper(handle, encoding=encoding, newline=newline)
        self._pending.append((target, temp, handle, raw))
        return handle

    def commit(self) -> None:
        try:
            for _, _, handle, _ in self._pending:
                handle.close()  # flush, fsync, close: a full disk shows here, before anything is renamed
        except BaseException:
            self.discard()
            raise
        pending, self._pending = self._pending, []
        renamed = 0
        try:
            for target, temp, _, raw in pending:
                try:
                    os.replace(temp, target)
                except OSError as e:
                    raise output_error(e, raw.target) from e
                renamed += 1
        except BaseException:
            for _, temp, _, _ in pending[renamed:]:
                temp.unlink(missing_ok=True)
            raise
        for folder in {target.parent for target, *_ in pending}:
            _sync_folder(folder)

    def discard(self) -> None:
        pending, self._pending = self._pending, []
        for _, temp, handle, raw in pending:
            raw.discarded = True
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - the file is thrown away; the first error is the one to report
                pass
            temp.unlink(missing_ok=True)


def _create_beside(target: Path, shown: str | Path) -> tuple[int, Path]:
    """A new, empty, hidden file in the target's folder, created with the usual permissions (umask)."""
    while True:
        temp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), temp
        except FileExistsError:
            continue
        except OSError as e:
            raise output_error(e, shown) from e


def _sync_folder(folder: Path) -> None:
    """Make the renames themselves durable; not every system can open a folder, so this is best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replaced(path: str | Path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
    """`open(path, mode)` that replaces `path` only when the block succeeds (see `OutputSet`)."""
    with OutputSet() as outputs:
        yield outputs.open(path, mode, encoding, newline)


def write_text(path: str | Path, text: str, encoding: str = "utf-8", newline: str | None = None) -> Path:
    with replaced(path, "w", encoding, newline) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replaced(path, "wb", None) as f:
        f.write(data)
    return Path(path)


@contextmanager
def replaced_folder(out: str | Path) -> Iterator[Path]:
    """A fresh folder `OUT.partial` to fill; swapped in for OUT when the block succeeds (the old OUT is removed
    only after the new one is in place), removed when it fails. A crash leaves OUT.partial, cleared next time."""
    out = Path(out)
    temp = out.with_name(out.name + ".partial")
    try:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    except OSError as e:
        raise output_error(e, temp) from e
    try:
        yield temp
        _swap_in(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _swap_in(temp: Path, out: Path) -> None:
    try:
        if not out.exists():
            temp.rename(out)
            return
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        try:
            temp.rename(out)
        except OSError:
            old.rename(out)  # put the previous folder back
            raise
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise output_error(e, out) from e
