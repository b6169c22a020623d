"""A private Docker engine and the worker images for tests, the demo and benchmarks.

`start_private_dockerd` runs `dockerd` with its own socket, data and exec roots (the recipe in the
project's design notes, ../shared/DESIGN.md, outside this repository), so it never touches the
host's engine or another engineer's. Stop it with `handle.stop()`, which kills the pid from *its*
pidfile, never a process found by name.

Two images are made locally (no registry is reachable): `build_standin_image`, busybox serving a
fake XMRig API, and `build_xmrig_image`, the real test XMRig (demo/fetch_xmrig.py) with the host's
glibc, FROM-scratch style. Neither is the production worker image (worker/Dockerfile).
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

import docker

HERE = os.path.dirname(os.path.abspath(__file__))
ENTRYPOINT = os.path.join(HERE, "worker", "entrypoint.sh")
BUSYBOX = "/bin/busybox"
# The applets the stand-in entrypoint uses, each a symlink to /bin/busybox in the image.
APPLETS = ("sh", "httpd", "sleep", "mkdir", "cat", "echo", "printf", "kill", "date", "rm", "ls", "true", "cp", "sed", "head")


@dataclass
class DockerdHandle:
    """A running private dockerd: its socket URL, folder, process and log file."""

    base_dir: str
    url: str
    proc: subprocess.Popen
    log_path: str
    _log: Any = field(default=None, repr=False)

    @property
    def pidfile(self) -> str:
        return os.path.join(self.base_dir, "docker.pid")

    def _pid(self) -> int:
        try:
            with open(self.pidfile, encoding="ascii") as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the engine by its pidfile's pid, wait, SIGKILL if needed, unmount what it left."""
        pid = self._pid()
        if self.proc.poll() is None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log:
            self._log.close()
        _unmount_under(self.base_dir)


def _unmount_under(base_dir: str) -> None:
    """Unmount anything dockerd left mounted below `base_dir` (deepest first)."""
    prefix = os.path.realpath(base_dir) + "/"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            points = [line.split()[1] for line in fh]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def dockerd_command(base_dir: str) -> list[str]:
    """The design notes' recipe: own socket/data/exec roots, no iptables, no bridge, vfs storage."""
    return [
        shutil.which("dockerd") or "/usr/sbin/dockerd",
        "--host", f"unix://{base_dir}/docker.sock",
        "--data-root", f"{base_dir}/data",
        "--exec-root", f"{base_dir}/exec",
        "--pidfile", f"{base_dir}/docker.pid",
        "--iptables=false", "--ip6tables=false", "--bridge=none",
        "--storage-driver=vfs",
        "--default-ulimit", "nofile=1024:1024",
    ]


def _ping(sock_path: str) -> bool:
    """Whether the engine answers `GET /_ping` with OK on its unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = s.recv(4096)
        return b" 200 " in data.split(b"\r\n", 1)[0] + b" "
    except OSError:
        return False


def start_private_dockerd(base_dir: str, timeout: float = 60) -> DockerdHandle:
    """Start dockerd in `base_dir` (keep it short: unix socket paths are limited to 108 bytes)."""
    base_dir = os.path.abspath(base_dir)
    sock = os.path.join(base_dir, "docker.sock")
    if len(sock) > 100:
        raise ValueError(f"{base_dir} is too long for a unix socket path; use a short folder like /tmp/smd-x")
    os.makedirs(base_dir, exist_ok=True)
    log_path = os.path.join(base_dir, "dockerd.log")
    log = open(log_path, "ab")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    proc = subprocess.Popen(dockerd_command(base_dir), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    handle = DockerdHandle(base_dir=base_dir, url=f"unix://{sock}", proc=proc, log_path=log_path, _log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            handle.stop()
            raise RuntimeError(f"dockerd exited with {proc.returncode}; see {log_path}: {_tail(log_path)}")
        if _ping(sock):
            return handle
        time.sleep(0.1)
    handle.stop()
    raise RuntimeError(f"dockerd did not answer on {sock} within {timeout:g}s; see {log_path}: {_tail(log_path)}")


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return " | ".join(fh.read().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
    tar.addfile(info)


def standin_rootfs(busybox: str = BUSYBOX, entrypoint: str = ENTRYPOINT) -> bytes:
    """A tarball of the stand-in worker's root filesystem: busybox, its applet links, the entrypoint."""
    with open(busybox, "rb") as fh:
        busybox_bytes = fh.read()
    with open(entrypoint, "rb") as fh:
        entry_bytes = fh.read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "www", "proc", "sys", "dev", "etc"):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        _add_file(tar, "bin/busybox", busybox_bytes, 0o755)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        _add_file(tar, "entrypoint.sh", entry_bytes, 0o755)
    return buf.getvalue()


def build_standin_image(client_or_url: Any, tag: str, entrypoint: str = "/entrypoint.sh") -> None:
    """`docker import` the stand-in rootfs as `tag`, with /entrypoint.sh as its entrypoint.

    Another `entrypoint` (one that does not exist, say) makes an image whose containers are
    created but fail to start, for tests of a failed start.
    """
    _import_image(client_or_url, tag, standin_rootfs(), entrypoint)


def _import_image(client_or_url: Any, tag: str, rootfs: bytes, entrypoint: str) -> None:
    """`docker import` the tarball `rootfs` as `tag` with `entrypoint` (its command: the container's)."""
    client = docker.DockerClient(base_url=client_or_url, timeout=60) if isinstance(client_or_url, str) else client_or_url
    repo, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    client.api.import_image_from_data(
        rootfs, repository=repo, tag=version or "latest",
        changes=[f'ENTRYPOINT ["{entrypoint}"]'],
    )
    client.images.get(tag)  # raises ImageNotFound when the import did not take


# --- the real test XMRig -----------------------------------------------------------------------------
XMRIG_ENTRYPOINT = "/xmrig"
# The glibc pieces XMRig 6.16.0 links (ldd); an image lacking one of them could not start it.
XMRIG_LIBS = ("libc.so", "libpthread.so", "librt.so", "libdl.so", "libm.so", "ld-linux-x86-64.so")
_LDD_PATH = re.compile(r"(/\S+)\s+\(0x[0-9a-f]+\)")


def shared_libraries(binary: str) -> list[str]:
    """The absolute paths of the shared libraries `binary` loads here (ldd), the loader included."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"ldd {binary} failed: {(out.stderr or out.stdout).strip()}")
    return [m.group(1) for m in map(_LDD_PATH.search, out.stdout.splitlines()) if m]


def _add_parents(tar: tarfile.TarFile, path: str, seen: set[str]) -> None:
    """Directory entries for every parent of `path` (relative), each once."""
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        folder = "/".join(parts[:i])
        if folder not in seen:
            seen.add(folder)
            _add_dir(tar, folder)


def xmrig_rootfs(binary: str) -> bytes:
    """A tarball of a FROM-scratch-like root: /xmrig, the host's copies of the libraries it loads
    at the paths ldd names (symlinks resolved), /tmp. RuntimeError when a glibc piece is missing."""
    libs = shared_libraries(binary)
    missing = [name for name in XMRIG_LIBS if not any(os.path.basename(p).startswith(name) for p in libs)]
    if missing:
        raise RuntimeError(f"ldd {binary} does not name {', '.join(missing)}; is it the x86-64 glibc XMRig?")
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add_dir(tar, "tmp", 0o1777)
        seen.add("tmp")
        with open(binary, "rb") as fh:
            _add_file(tar, XMRIG_ENTRYPOINT.lstrip("/"), fh.read(), 0o755)
        for lib in libs:
            name = lib.lstrip("/")
            _add_parents(tar, name, seen)
            with open(os.path.realpath(lib), "rb") as fh:
                _add_file(tar, name, fh.read(), 0o755)
    return buf.getvalue()


def light_xmrig_config(src: str, http_port: int | None = None) -> dict[str, Any]:
    """`src` (json/config.json) with RandomX in light mode (~256 MB instead of a 2 GB dataset), and
    the "http" block's port changed when `http_port` is given: what the tests and the demo mount."""
    with open(src, encoding="utf-8") as fh:
        cfg = json.load(fh)
    cfg.setdefault("randomx", {})["mode"] = "light"
    if http_port is not None:
        cfg.setdefault("http", {})["port"] = http_port
    return cfg


def build_xmrig_image(client_or_url: Any, tag: str, binary: str) -> None:
    """`docker import` the real XMRig (`binary`, e.g. demo.fetch_xmrig.binary_path()) as `tag`, with
    /xmrig as its entrypoint, so the controller's argument list is the container's command."""
    _import_image(client_or_url, tag, xmrig_rootfs(binary), XMRIG_ENTRYPOINT)
