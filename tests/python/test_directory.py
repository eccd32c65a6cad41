"""The etcd directory from Python, against a real etcd (Debian's etcd-server)
started on free loopback ports; skipped where etcd is not installed or the
library was built without the directory."""
import contextlib
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

import xrail
from conftest import settings


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _etcd(tmp_path, scheme="http", extra=()):
    """etcd on free loopback ports, listening: its client URL. Stopped after."""
    if not shutil.which("etcd"):
        pytest.skip("etcd is not installed (Debian: etcd-server; scripts/setup.sh)")
    client, peer = _free_port(), _free_port()
    url, purl = f"{scheme}://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = open(tmp_path / "etcd.log", "wb")
    proc = subprocess.Popen(
        ["etcd", "--name", "py", "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
         "--initial-cluster", f"py={purl}", *extra], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", client), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "etcd exited at start"
                assert time.monotonic() < deadline, "etcd did not listen in 30 s"
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.fixture
def etcd(tmp_path):
    with _etcd(tmp_path) as url:
        yield url


def _open(engine, url, **opts):
    deadline = time.monotonic() + 30
    while True:  # etcd listens before it serves
        try:
            return engine.open_directory(url, prefix="/py-test/", ttl=2, **opts)
        except xrail.NotSupported as e:
            pytest.skip(str(e))
        except xrail.DirectoryError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_lookup_update_and_leave(etcd):
    a = xrail.Engine("a", **settings("tcp", progress_thread=True))
    b = xrail.Engine("b", **settings("tcp", progress_thread=True))
    try:
        dst = np.zeros(1 << 16, dtype=np.uint8)
        ra = a.register(dst, access="rw")  # kept: a dropped Region deregisters
        _open(a, etcd)
        _open(b, etcd)
        src = np.arange(1 << 16, dtype=np.uint32).astype(np.uint8)
        rs = b.register(src)
        peer = b.lookup("a", timeout=10)
        assert b.lookup("a") is not None
        with pytest.raises(xrail.Error):
            peer.unload()  # the directory owns it
        b.write(peer, [src], [(dst.ctypes.data, dst.nbytes)]).wait(30)
        assert np.array_equal(dst, src)
        # A region registered after the lookup reaches the same handle.
        dst2 = np.zeros(4096, dtype=np.uint8)
        ra2 = a.register(dst2, access="rw")
        deadline = time.monotonic() + 10
        seen = []
        while ("update", "a") not in seen:
            seen += [(k, n) for k, n, _ in b.directory_events()]
            assert time.monotonic() < deadline, f"no update event: {seen}"
            time.sleep(0.02)
        assert ("join", "a") in seen
        b.write(peer, [src[:4096]], [(dst2.ctypes.data, 4096)]).wait(30)
        assert np.array_equal(dst2, src[:4096])
        with pytest.raises(xrail.Timeout):
            b.lookup("nobody", timeout=0.2)
        # Leaving: the peer's new transfers are refused with PeerGone.
        a.close_directory()
        deadline = time.monotonic() + 10
        while ("leave", "a") not in seen:
            seen += [(k, n) for k, n, _ in b.directory_events()]
            assert time.monotonic() < deadline, f"no leave event: {seen}"
            time.sleep(0.02)
        with pytest.raises(xrail.PeerGone):
            b.write(peer, [src], [(dst.ctypes.data, dst.nbytes)])
        del ra, ra2, rs
    finally:
        b.close()
        a.close()


@pytest.mark.parametrize("thread", [True, False])
def test_events_from_asyncio(etcd, thread):
    """Join and leave awaited on the engine's fd, while the loop runs a
    ticker: the wait must not block the loop. Without a progress thread too:
    the directory's own thread wakes the fd."""
    import asyncio

    w = xrail.Engine("watcher", **settings("tcp", progress_thread=thread))
    try:
        _open(w, etcd)

        async def scenario():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.ensure_future(ticker())
            with pytest.raises(xrail.Timeout):
                await w.wait_directory_event_async(timeout=0.2)
            j = xrail.Engine("joiner", **settings("tcp", progress_thread=True))
            try:
                _open(j, etcd)
                kind, name, rev = await w.wait_directory_event_async(timeout=10)
                assert (kind, name) == ("join", "joiner") and rev > 0
                j.close_directory()
                got = []
                async for ev in w.directory_events_async():
                    got.append(ev[:2])
                    if ev[:2] == ("leave", "joiner"):
                        break
                assert got[-1] == ("leave", "joiner")
            finally:
                j.close()
            t.cancel()
            return ticks

        # The loop ran while it waited: 0.2 s of timeout alone is ~20 ticks.
        assert asyncio.run(asyncio.wait_for(scenario(), 30)) >= 10
    finally:
        w.close()


def _write_through(url, **auth):
    """Two engines find each other through etcd with these options, and a
    WRITE between them is verified."""
    a = xrail.Engine("a", **settings("tcp", progress_thread=True))
    b = xrail.Engine("b", **settings("tcp", progress_thread=True))
    try:
        dst = np.zeros(4096, dtype=np.uint8)
        ra = a.register(dst, access="rw")
        _open(a, url, **auth)
        b.open_directory(url, prefix="/py-test/", ttl=2, **auth)
        src = np.arange(4096, dtype=np.uint32).astype(np.uint8)
        rs = b.register(src)
        peer = b.lookup("a", timeout=10)
        b.write(peer, [src], [(dst.ctypes.data, dst.nbytes)]).wait(30)
        assert np.array_equal(dst, src)
        del ra, rs
    finally:
        b.close()
        a.close()


def _refused(url, **opts):
    """Opening the directory with these options raises DirectoryError: its words."""
    e = xrail.Engine("c", **settings("tcp", rails=1))
    try:
        with pytest.raises(xrail.DirectoryError) as why:
            e.open_directory(url, prefix="/py-test/", **opts)
        return str(why.value)
    finally:
        e.close()


def test_user_and_password(tmp_path):
    """etcd with authentication on: the right password works, a wrong one
    and none are refused with DirectoryError, naming what etcd said."""
    if not shutil.which("etcdctl"):
        pytest.skip("etcdctl is not installed (Debian: etcd-client)")
    with _etcd(tmp_path) as url:
        ctl = ["etcdctl", f"--endpoints={url}", "--dial-timeout=2s"]
        env = dict(os.environ, ETCDCTL_API="3")
        deadline = time.monotonic() + 30
        while subprocess.run(ctl + ["user", "add", "root:s3cret"], env=env,
                             capture_output=True).returncode:
            assert time.monotonic() < deadline, "etcdctl user add failed for 30 s"
            time.sleep(0.2)
        for cmd in (["user", "grant-role", "root", "root"], ["auth", "enable"]):
            r = subprocess.run(ctl + cmd, env=env, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        _write_through(url, user="root", password="s3cret")
        assert "auth" in _refused(url, user="root", password="wrong").lower()
        _refused(url)


def test_tls_with_client_certificate(tmp_path):
    """etcd over https, asking for a client certificate: the CA and the
    client's certificate and key work; without them, DirectoryError."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=xrail-ca",
         "-keyout", "ca.key", "-out", "ca.crt")
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for who in ("server", "client"):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
             "-keyout", f"{who}.key", "-out", f"{who}.csr")
        ossl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", f"{who}.crt")
    t = str(tmp_path)
    with _etcd(tmp_path, "https", ["--cert-file", f"{t}/server.crt", "--key-file",
                                   f"{t}/server.key", "--client-cert-auth",
                                   "--trusted-ca-file", f"{t}/ca.crt"]) as url:
        client = dict(cert_file=f"{t}/client.crt", key_file=f"{t}/client.key")
        _write_through(url, ca_file=f"{t}/ca.crt", **client)
        _refused(url, ca_file=f"{t}/ca.crt")  # no client certificate
        _refused(url, **client)  # a CA it does not trust
