"""A worker and a producer talking to Redis over TLS (rediss://), through a TLS terminator in front of
the test Redis; plus credentials never printed by `tagger config`."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagger.broker.config import make_producer_app
from tagger.broker.events import announce
from tagger.broker.presence import present
from tagger.broker.send import celery_sender
from tagger.db import make_engine, make_sessionmaker, upgrade
from tagger.jobs.progress import wait
from tagger.worker.local import LocalWorkers
from tests.conftest import make_model, make_settings, submit_keys, write_stills
from tests.support.cli import tagger


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_redis(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """rediss:// on a free port, terminated here and forwarded to the plain test Redis."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    upstream_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()
    opened: list[socket.socket] = []

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                client = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                raw.close()
                continue
            opened.append(raw)
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            opened.extend((client, upstream))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}", cert
    stop.set()
    thread.join(5)
    listener.close()
    for sock in opened:
        sock.close()


def test_workers_and_producers_use_a_tls_broker(tls_redis: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_redis
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}", broker_url=url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    make_model(settings, sessions)
    keys = write_stills(tmp_path / "archive", 12, seed=31)
    with LocalWorkers(settings, count=1, log_file=tmp_path / "workers.log") as workers:
        job = submit_keys(
            sessions, celery_sender(make_producer_app(settings, url)), keys, storage_url=(tmp_path / "archive").as_uri()
        )
        result = wait(sessions, job.job_id, timeout=120, show_progress=False, alive=workers.alive)
        assert announce(url, "m-test") >= 1  # the worker also listens for model announcements over TLS
        assert f"local0-{os.getpid()}" in [n.split("@")[0] for n in present(url)]  # and says it is up there
    assert (result.state.value, result.done) == ("done", 12)
    engine.dispose()


def test_config_never_prints_credentials(tmp_path: Path) -> None:
    secret = uuid.uuid4().hex
    settings = make_settings(
        tmp_path,
        f"postgresql+psycopg://tagger:{secret}@db.example/tagger?sslmode=verify-full",
        broker_url=f"rediss://:{secret}@redis.example:6380/0?ssl_cert_reqs=required",
        webhook_secret=secret,
    )
    shown = tagger(settings, "config")
    assert shown.returncode == 0, shown.stderr
    assert secret not in shown.stdout + shown.stderr and "sslmode=verify-full" in shown.stdout
    tagger_lines = [line for line in shown.stdout.splitlines() if line.startswith("TAGGER_")]
    assert sum(line.count("********") for line in tagger_lines) == 3


def test_a_broker_certificate_from_another_authority_is_refused(
    tls_redis: tuple[str, Path], redis_url: str, tmp_path: Path
) -> None:
    """TLS verifies: with a CA that did not sign the broker's certificate, nothing is sent."""
    from tagger_client import BrokerUnavailable, TaggerClient

    url, _ = tls_redis
    other = tmp_path / "other"
    other.mkdir()
    stranger, _ = _self_signed(other)
    wrong = url.split("ssl_ca_certs=")[0] + f"ssl_ca_certs={stranger}"
    client = TaggerClient(broker_url=wrong, database_url="sqlite://")
    with pytest.raises(BrokerUnavailable, match="(?i)certificate verify failed"):
        client.submit(keys=["a.jpg"], storage_url="s3://stills")
    client.close()
    right = TaggerClient(broker_url=url, database_url="sqlite://")
    right.submit(keys=["a.jpg"], storage_url="s3://stills")  # the same call with the right authority goes through
    right.close()
    import redis

    plain = redis.Redis.from_url(redis_url)  # the message it sent must not reach another test's worker
    assert plain.delete("tagger.interactive") == 1
    plain.close()
