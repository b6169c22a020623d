"""The command pipe: a FIFO at PIPE_PATH (mode 0600) read line by line, each line handed to a runner.

Knows bytes, lines and the FIFO's life (created, replaced, re-opened after every writer left); the
command language is commands.py's, passed in as `run`. No busy loop: poll() with a timeout.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import threading
from dataclasses import dataclass, field
from typing import Callable

import utils

MAX_LINE_BYTES = 4096  # a longer line is rejected, not executed
POLL_SECONDS = 1.0  # how often an idle reader looks at `stop` and at the FIFO's identity
RETRY_SECONDS = 5.0  # wait before retrying when the FIFO cannot be made or opened
Runner = Callable[[str, str], str]  # (line, source) -> the reply to log ("" logs nothing)


@dataclass
class LineSplitter:
    """Bytes from the pipe -> complete UTF-8 lines. Bounded: a line over `limit` bytes is dropped
    (and reported) without being held in memory; non-UTF-8 lines are reported and skipped."""

    limit: int = MAX_LINE_BYTES
    _buf: bytearray = field(default_factory=bytearray)
    _overflow: int = 0  # bytes of an over-long line seen so far (0: not in one)

    def feed(self, data: bytes) -> tuple[list[str], list[str]]:
        """Returns (lines, problems)."""
        lines: list[str] = []
        problems: list[str] = []
        while data:
            nl = data.find(b"\n")
            chunk, data = (data, b"") if nl < 0 else (data[:nl], data[nl + 1 :])
            self._take(chunk)
            if nl >= 0:
                self._end_line(lines, problems)
        return lines, problems

    def flush(self) -> tuple[list[str], list[str]]:
        """End of input: whatever is left is a last line."""
        lines: list[str] = []
        problems: list[str] = []
        if self._buf or self._overflow:
            self._end_line(lines, problems)
        return lines, problems

    def _take(self, chunk: bytes) -> None:
        if self._overflow:
            self._overflow += len(chunk)
        elif len(self._buf) + len(chunk) > self.limit:
            self._overflow = len(self._buf) + len(chunk)
            self._buf.clear()
        else:
            self._buf += chunk

    def _end_line(self, lines: list[str], problems: list[str]) -> None:
        raw, over = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = 0
        if over:
            problems.append(f"a line of {over} bytes is over the {self.limit}-byte limit: rejected")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"a line with non-UTF-8 bytes was skipped (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})")
            return
        if text.strip():
            lines.append(text.strip())


def ensure_fifo(path: str) -> None:
    """Make `path` a FIFO with mode 0600: create it, or replace a non-FIFO (the seed would have
    re-read a regular file forever). Raises OSError when that is impossible (e.g. a directory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISFIFO(st.st_mode):
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.chmod(path, 0o600)
        return
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a FIFO", path)
        utils.log(f"[WARN] {path} exists but is not a FIFO: replacing it with one", force=True)
        os.unlink(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    os.mkfifo(path, 0o600)
    os.chmod(path, 0o600)  # mkfifo honours the umask; make the mode exact


def _same_file(path: str, fd: int) -> bool:
    """Whether `path` is still the FIFO we have open (it may have been deleted or replaced)."""
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _run_lines(lines: list[str], problems: list[str], path: str, run: Runner) -> None:
    for problem in problems:
        utils.log(f"[WARN] command pipe {path}: {problem}", force=True)
    for line in lines:
        reply = run(line, "pipe")
        if reply:
            utils.log(f"[INFO] pipe> {line[:80]}: {reply}", force=True)


def _read_until_eof(fd: int, path: str, stop: threading.Event, run: Runner) -> bool:
    """Serve one open of the FIFO until EOF (every writer gone), stop, or the path changing.

    Returns True on EOF (re-open the same FIFO), False otherwise. The fd is non-blocking and waited
    on with poll(): no busy loop, and `stop` is seen within POLL_SECONDS. Linux reports no POLLHUP
    on a fresh open that has had no writer yet, so a re-open waits quietly for the next writer.
    """
    splitter = LineSplitter()
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    eof = False
    while not stop.is_set():
        if not poller.poll(POLL_SECONDS * 1000):
            if not _same_file(path, fd):
                utils.log(f"[WARN] command pipe {path} was removed or replaced: recreating it", force=True)
                break
            continue
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            eof = True
            break
        _run_lines(*splitter.feed(data), path, run)
    _run_lines(*splitter.flush(), path, run)
    return eof


def _open_fifo(path: str) -> int:
    ensure_fifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def _reopen(fd: int, path: str) -> int | None:
    """A fresh fd on the same FIFO, opened before the old one is closed: a writer that slips in
    between keeps its bytes (a pipe's buffer dies with its last reader)."""
    try:
        new = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        new = None
    if new is not None and not _same_file(path, new):
        os.close(new)
        new = None
    os.close(fd)
    return new


def listen(stop: threading.Event, path: str, run: Runner) -> None:
    """Read lines from the FIFO at `path` until `stop` is set, running each with `run(line, "pipe")`
    and logging its reply. Blocking: the daemon runs it in a daemon thread. Never raises."""
    incident = f"pipe:{path}"
    utils.log(f"[INFO] listening for commands on {path}")
    fd: int | None = None
    while not stop.is_set():
        if fd is None:
            try:
                fd = _open_fifo(path)
            except OSError as exc:  # said once per fault, not once per retry
                utils.incidents.raise_(incident, f"command pipe {path} unusable: {exc}; retrying every "
                                       f"{RETRY_SECONDS:g} s", notify=False)
                stop.wait(RETRY_SECONDS)
                continue
            utils.incidents.clear(incident, f"command pipe {path} is usable again", notify=False)
        try:
            eof = _read_until_eof(fd, path, stop, run)
        except Exception as exc:  # keep the reader alive whatever happens
            utils.log(f"[ERROR] command pipe {path}: {type(exc).__name__}: {exc}", force=True)
            stop.wait(POLL_SECONDS)
            eof = False
        if eof and not stop.is_set():
            fd = _reopen(fd, path)
        else:
            os.close(fd)
            fd = None
    if fd is not None:
        os.close(fd)
    utils.log(f"[INFO] command pipe reader on {path} stopped")
