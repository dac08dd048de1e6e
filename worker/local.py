"""Start `tagger worker` processes on this machine (for `tagger tag` without a broker, the demo, tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tagger.broker.send import Send
from tagger.errors import ConfigError, TaggerError, WorkersExitedError
from tagger.processes import die_with_parent
from tagger.settings import Settings


class LocalWorkers:
    """N real worker processes sharing this machine's settings, stopped (warm shutdown) on exit."""

    def __init__(
        self,
        settings: Settings,
        *,
        count: int = 1,
        concurrency: int | None = None,
        log_file: Path | None = None,
        extra_env: dict[str, str] | None = None,
        queues: str | None = None,
    ) -> None:
        self.settings = settings
        self.queues = queues
        self.count = count
        self.concurrency = concurrency
        self.log_file = log_file
        self.extra_env = extra_env or {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self._log: Any = None

    def start(self) -> LocalWorkers:
        from tagger.processes import child_env

        env = child_env(self.settings)
        env.update(self.extra_env)
        log = self._log = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        for i in range(self.count):
            cmd = [
                sys.executable,
                "-m",
                "tagger",
                "worker",
                "--hostname",
                f"local{i}-{os.getpid()}@%h",
            ]
            if self.concurrency:  # else TAGGER_WORKER_CONCURRENCY, else the worker's own default
                cmd += ["--concurrency", str(self.concurrency)]
            if self.queues:
                cmd += ["--queues", self.queues]
            out = log if log is not None else subprocess.DEVNULL
            own = dict(env)
            if self.settings.metrics_port:  # one port each: worker i listens on TAGGER_METRICS_PORT + i
                own["TAGGER_METRICS_PORT"] = str(self.settings.metrics_port + i)
            self.procs.append(
                subprocess.Popen(
                    cmd, env=own, stdout=out, stderr=out, start_new_session=True, preexec_fn=die_with_parent
                )
            )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stopped_error(self, waiting: WorkersExitedError) -> TaggerError:
        """Why the workers stopped, as the error to show instead of `waiting`: the last `tagger: error:` line
        they wrote to their log (a ConfigError when they exited with its code), else `waiting` naming the log."""
        codes = {p.returncode for p in self.procs if p.poll() is not None}
        said = ""
        if self.log_file is not None and self.log_file.is_file():
            with open(self.log_file, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
                tail = log.read().decode(errors="replace").splitlines()
            said = next((line for line in reversed(tail) if line.startswith("tagger: error: ")), "")
        if said and codes == {ConfigError.exit_code}:
            job = waiting.job_id
            again = f"; job {job} waits: `tagger jobs reconcile {job[:8]}` runs it" if job else ""
            return ConfigError(f"the local workers could not start: {said.removeprefix('tagger: error: ')}{again}")
        where = f"; their log: {self.log_file}" if self.log_file else ""
        return WorkersExitedError(f"{waiting} (exit codes {sorted(codes)}{', ' + said if said else ''}){where}")

    @contextmanager
    def explaining(self) -> Iterator[None]:
        """Inside it, these workers stopping under a waiter raise their own reason (`stopped_error`)."""
        try:
            yield
        except WorkersExitedError as exc:
            raise self.stopped_error(exc) from None

    def __enter__(self) -> LocalWorkers:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()


@dataclass(frozen=True)
class Dispatch:
    """Where this command sends tagging work: the configured broker's workers, or its own local ones."""

    send: Send
    broker_url: str
    workers: LocalWorkers | None  # this command's own workers (None: the broker's)

    @property
    def local(self) -> bool:
        return self.workers is not None

    @property
    def alive(self) -> Callable[[], bool] | None:
        """Whether this command's workers still run, for a waiter (None: remote workers, not watched)."""
        return self.workers.alive if self.workers is not None else None

    def explaining(self) -> AbstractContextManager[None]:
        """This command's workers stopping under a waiter raise their own reason; remote ones are not watched."""
        return self.workers.explaining() if self.workers is not None else nullcontext()


@contextmanager
def dispatch(settings: Settings, *, workers: int = 1) -> Iterator[Dispatch]:
    """TAGGER_BROKER_URL's workers; or, with no broker configured, an embedded Redis and `workers` local
    worker processes that live exactly as long as this block (stopped on exit, Ctrl-C or SIGTERM)."""
    from tagger.broker.send import broker_sender

    with ExitStack() as stack:
        if settings.broker_url:
            yield Dispatch(broker_sender(settings), settings.broker_url, None)
            return
        local = start_local_cluster(stack, settings, workers)
        print(
            f"no TAGGER_BROKER_URL: started an embedded Redis and {workers} local worker(s) for this command",
            file=sys.stderr,
        )
        yield Dispatch(broker_sender(settings, local.settings.broker_url), local.settings.broker_url, local)


def start_local_cluster(stack: ExitStack, settings: Settings, count: int) -> LocalWorkers:
    """An embedded Redis and `count` worker processes for this machine, stopped when `stack` closes.

    The returned workers carry the broker URL in their settings; `alive()` tells a waiter when they died.
    """
    from tagger.broker.embedded import EmbeddedRedis

    redis = stack.enter_context(EmbeddedRedis())
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    local = settings.replace(broker_url=redis.url)
    return stack.enter_context(LocalWorkers(local, count=count, log_file=settings.var_dir / "workers.log"))
