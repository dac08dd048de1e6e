"""One typed settings object, built once from TAGGER_* environment variables and passed down."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tagger.errors import ConfigError

PREFIX = "TAGGER_"

_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")
_BROKER_SCHEMES = ("redis", "rediss", "redis+socket")
_STORAGE_SCHEMES = ("file", "s3")
RETRAIN_SCHEDULE = "0 3 1 * *"  # scheduled retraining's default: 03:00 on the 1st of each month


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything configurable; each field maps to TAGGER_<FIELD NAME IN CAPITALS>."""

    var_dir: Path = field(default=Path("var"), metadata={"help": "Local state: SQLite file, models, embedded Redis."})
    database_url: str = field(default="", metadata={"help": "SQLAlchemy URL. Default: SQLite file under var_dir."})
    broker_url: str = field(default="", metadata={"help": "Redis URL. Empty: tagger starts an embedded redis-server."})
    broker_allow_eviction: int = field(
        default=0,
        metadata={
            "help": "1: run on a broker Redis whose maxmemory-policy may evict keys (queued batches can vanish); "
            "0: a worker refuses to start on one, and /readyz reports it."
        },
    )
    heal_seconds: int = field(
        default=60,
        metadata={
            "help": "How often one worker of the fleet checks for jobs whose messages the broker lost (evicted, "
            "a restart without persistence) and queues their pending images again; 0: never (then "
            "`tagger jobs reconcile` does it by hand)."
        },
    )
    storage_url: str = field(
        default="",
        metadata={"help": "Where images live when a job names only keys: file:///dir or s3://bucket/prefix."},
    )
    model_store: str = field(
        default="",
        metadata={"help": "Where model artifacts live: file:///dir or s3://bucket/prefix. Default: var_dir/models."},
    )
    batch_size: int = field(
        default=32, metadata={"help": "Images per task message and per forward pass (64-256 on a GPU)."}
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "auto, cpu, cuda or cuda:N. auto picks CUDA when present; a CUDA device the machine lacks stops "
            "a worker at its start."
        },
    )
    threshold: float | None = field(
        default=None, metadata={"help": "Override the model's tag threshold (0-1). Default: the artifact's."}
    )
    fetch_threads: int = field(default=8, metadata={"help": "Threads per worker process fetching and decoding images."})
    worker_concurrency: int = field(
        default=0,
        metadata={
            "help": "Batches a `tagger worker` runs at once: pool processes (prefork) or task threads (threads). "
            "0: 3 threads on a GPU; on CPU one process per core, each with one torch thread."
        },
    )
    worker_pool: str = field(
        default="auto",
        metadata={
            "help": "auto, prefork or threads. threads: one model, batches overlap (fetch/decode beside inference); "
            "auto picks threads on a GPU, prefork on CPU."
        },
    )
    torch_threads: int = field(
        default=0,
        metadata={
            "help": "CPU threads each worker process gives torch (intra-op). 0: the cores divided by the pool "
            "processes (prefork), torch's default (threads pool). Set it when several workers share a host, so "
            "together they do not oversubscribe its cores."
        },
    )
    decoder: str = field(
        default="auto",
        metadata={
            "help": "auto, cpu or device. device: JPEGs decoded in batches by torchvision on the model's device "
            "(nvJPEG on CUDA), the rest by Pillow; auto picks device on CUDA, cpu elsewhere."
        },
    )
    cpu_jpeg_share: float = field(
        default=0.2,
        metadata={"help": "With decoder=device: the share of each batch's JPEGs decoded by Pillow beside the GPU."},
    )
    compile: int = field(
        default=0, metadata={"help": "1: torch.compile the model (CUDA), warmed up before it serves; 0: eager."}
    )
    visibility_timeout: int = field(
        default=3600,
        metadata={"help": "Seconds before Redis redelivers an unacknowledged batch; above the longest batch."},
    )
    max_image_bytes: int = field(
        default=50 * 1024 * 1024, metadata={"help": "Larger files fail with a reason instead of being read."}
    )
    read_timeout: float = field(
        default=60.0,
        metadata={
            "help": "Seconds a batch's images have to be read from storage; one whose read has not finished "
            "(a hung network file or server) fails alone with that reason and its batch-mates are tagged."
        },
    )
    content_hash: int = field(
        default=0,
        metadata={
            "help": "1: jobs submitted through this process (`tagger tag`; on workers, the jobs the client and the "
            "HTTP API send) record each image's SHA-256 as it is tagged, and an incremental re-run reads again "
            "what its listing calls unchanged and compares hashes (for storages whose sizes and times cannot be "
            "trusted); 0: the size and modification time, or the ETag, decide. A job's own choice (`tagger tag "
            "--hash`, `content_hash`) wins."
        },
    )
    jpeg_draft: int = field(
        default=1,
        metadata={"help": "1: decode JPEGs at a reduced DCT scale when bigger than the model input (fast); 0: full."},
    )
    max_image_pixels: int = field(
        default=100_000_000,
        metadata={"help": "Larger declared dimensions fail (decompression-bomb guard)."},
    )
    duplicate_threshold: float = field(
        default=0.99,
        metadata={
            "help": "Cosine similarity of two stills' embeddings at or above which `tagger duplicates` (and its "
            "API route) calls them near-duplicates and groups them (0-1; higher: fewer, surer groups). The "
            "default, measured on generated bursts (BENCHMARKS.md), favours precision."
        },
    )
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR."})
    retrain_schedule: str = field(
        default=RETRAIN_SCHEDULE,
        metadata={"help": "When `tagger beat` queues retraining: cron `min hour day month weekday`, or seconds."},
    )
    retrain_timezone: str = field(
        default="UTC",
        metadata={
            "help": "The time zone TAGGER_RETRAIN_SCHEDULE's cron fields are read in (an IANA name such as "
            "Europe/Paris or Asia/Tokyo); UTC whatever the host's TZ."
        },
    )
    retrain_labels: str = field(
        default="db", metadata={"help": "Labels for scheduled retraining: `db` (confirmed tags) or a CSV path."}
    )
    retrain_args: str = field(
        default="", metadata={"help": "Extra `tagger train` options for scheduled retraining, e.g. `--epochs 8`."}
    )
    webhook_secret: str = field(
        default="", metadata={"help": "Shared secret signing job-completion webhooks (HMAC-SHA256); never logged."}
    )
    webhook_timeout: float = field(
        default=10.0,
        metadata={"help": "Seconds a webhook receiver has to answer one attempt (delivery never holds up tagging)."},
    )
    webhook_hosts: str = field(
        default="",
        metadata={
            "help": "Comma-separated hosts that jobs submitted over HTTP (`tagger serve`) may send webhooks to; "
            "empty: none (an admin token may name any). Keeps a token holder from making workers call internal "
            "addresses."
        },
    )
    metrics_port: int = field(
        default=0,
        metadata={
            "help": "`tagger worker` serves /metrics (Prometheus), /livez and /readyz on this port; 0: not served. "
            "Needs TAGGER_METRICS_TOKEN."
        },
    )
    metrics_address: str = field(
        default="127.0.0.1", metadata={"help": "Address the metrics port listens on; 0.0.0.0 for every interface."}
    )
    metrics_token: str = field(
        default="",
        metadata={"help": "Bearer token every request to the metrics port must carry; never logged or printed."},
    )
    task_events: int = field(
        default=1,
        metadata={"help": "1: workers send Celery task events (for Flower and `celery events`); 0: off."},
    )
    log_format: str = field(
        default="text",
        metadata={"help": "text, or json: one JSON object per line with job_id, task_id and model_version."},
    )
    api_max_body_bytes: int = field(
        default=16 * 1024 * 1024,
        metadata={
            "help": "Largest request body `tagger serve` reads, in bytes; larger ones are refused with 413 "
            "(a job over more keys than fit: a prefix, a query, or several jobs)."
        },
    )
    web_secret: str = field(
        default="",
        metadata={
            "help": "Signs the review app's session cookies (`tagger serve`); empty: a random one per start, "
            "so sessions end when it restarts. Never logged or printed."
        },
    )
    web_cookie_secure: int = field(
        default=1,
        metadata={"help": "1: session cookies only over HTTPS (behind a TLS proxy); 0: plain HTTP too (local use)."},
    )
    job_retention_days: int = field(
        default=30,
        metadata={
            "help": "`tagger jobs prune` (without --older-than) prunes jobs that finished more than this many days "
            "ago: each keeps its row, counts and failures; the rows of its done and skipped images go."
        },
    )
    models_keep: int = field(
        default=2,
        metadata={
            "help": "`tagger models prune` (without --keep) keeps the active version and this many other versions "
            "that served most recently, for a rollback; the suggestions of older ones are deleted."
        },
    )
    xmp_root: str = field(
        default="tagger",
        metadata={
            "help": "The keyword root tagger writes its suggestions under in XMP sidecars (`tagger|night` in "
            "lr:hierarchicalSubject) and skips when it imports keywords as labels; `|` nests it deeper."
        },
    )
    test_holds: int = field(
        default=0,
        metadata={
            "help": "Tests only. 1: a worker stops at a stage a test armed (claimed, fetched, inferred, written) "
            "until the test releases it, so faults land exactly there (see tagger/worker/holds.py). 0: off."
        },
    )

    def __post_init__(self) -> None:
        var = Path(self.var_dir)
        object.__setattr__(self, "var_dir", var)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(var / 'tagger.db').resolve().as_posix()}")
        if not self.model_store:
            object.__setattr__(self, "model_store", (var / "models").resolve().as_uri())
        self._validate()

    def _validate(self) -> None:
        scheme = self.database_url.split(":", 1)[0]
        if scheme not in _DB_SCHEMES:
            raise ConfigError(
                f"TAGGER_DATABASE_URL={self.database_url!r}: scheme must be one of {_DB_SCHEMES}, "
                "e.g. sqlite:///var/tagger.db or postgresql+psycopg://user:pass@host/db"
            )
        if self.broker_url and urlparse(self.broker_url).scheme not in _BROKER_SCHEMES:
            raise ConfigError(
                f"TAGGER_BROKER_URL: scheme must be one of {_BROKER_SCHEMES}, e.g. redis://localhost:6379/0"
            )
        for name in ("storage_url", "model_store"):
            value = getattr(self, name)
            if value:
                _check_storage_url(f"TAGGER_{name.upper()}", value)
        if self.batch_size < 1 or self.batch_size > 1024:
            raise ConfigError(f"TAGGER_BATCH_SIZE={self.batch_size}: must be between 1 and 1024")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"TAGGER_DEVICE={self.device!r}: use auto, cpu, cuda or cuda:N (N a device number)")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"TAGGER_THRESHOLD={self.threshold}: must be strictly between 0 and 1")
        if self.content_hash not in (0, 1):
            raise ConfigError(f"TAGGER_CONTENT_HASH={self.content_hash}: 1 (hash what is tagged) or 0 (size and time)")
        if not 0.0 < self.duplicate_threshold <= 1.0:
            raise ConfigError(f"TAGGER_DUPLICATE_THRESHOLD={self.duplicate_threshold}: a similarity above 0, at most 1")
        if self.jpeg_draft not in (0, 1):
            raise ConfigError("TAGGER_JPEG_DRAFT must be 1 (draft decoding) or 0 (full decoding)")
        if self.fetch_threads < 1:
            raise ConfigError("TAGGER_FETCH_THREADS must be at least 1")
        if self.worker_concurrency < 0:
            raise ConfigError("TAGGER_WORKER_CONCURRENCY must be 0 (automatic) or more")
        if self.torch_threads < 0:
            raise ConfigError("TAGGER_TORCH_THREADS must be 0 (automatic) or more")
        if self.worker_pool not in ("auto", "prefork", "threads"):
            raise ConfigError(f"TAGGER_WORKER_POOL={self.worker_pool!r}: use auto, prefork or threads")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"TAGGER_METRICS_PORT={self.metrics_port}: a port number, or 0 for none")
        if self.metrics_port and len(self.metrics_token) < 16:
            raise ConfigError(
                "TAGGER_METRICS_PORT needs TAGGER_METRICS_TOKEN, at least 16 characters (e.g. `openssl rand -hex 24`): "
                "every request to the metrics port must carry it"
            )
        if self.web_secret and len(self.web_secret) < 32:
            raise ConfigError("TAGGER_WEB_SECRET: at least 32 characters (e.g. `openssl rand -hex 32`)")
        if self.web_cookie_secure not in (0, 1):
            raise ConfigError(f"TAGGER_WEB_COOKIE_SECURE={self.web_cookie_secure}: 1 (HTTPS only) or 0")
        if self.task_events not in (0, 1):
            raise ConfigError(f"TAGGER_TASK_EVENTS={self.task_events}: 1 (on) or 0 (off)")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"TAGGER_LOG_FORMAT={self.log_format!r}: text or json")
        if self.decoder not in ("auto", "cpu", "device"):
            raise ConfigError(f"TAGGER_DECODER={self.decoder!r}: use auto, cpu or device")
        if not 0.0 <= self.cpu_jpeg_share <= 1.0:
            raise ConfigError(f"TAGGER_CPU_JPEG_SHARE={self.cpu_jpeg_share}: must be between 0 and 1")
        if self.compile not in (0, 1):
            raise ConfigError("TAGGER_COMPILE must be 1 (torch.compile) or 0 (eager)")
        if self.heal_seconds < 0 or 0 < self.heal_seconds < 2:
            raise ConfigError(f"TAGGER_HEAL_SECONDS={self.heal_seconds}: 0 (never), or at least 2 seconds")
        if self.api_max_body_bytes < 1024:
            raise ConfigError(f"TAGGER_API_MAX_BODY_BYTES={self.api_max_body_bytes}: at least 1024 bytes")
        if not 0 < self.read_timeout <= 3600:
            raise ConfigError(f"TAGGER_READ_TIMEOUT={self.read_timeout}: seconds, above 0 and at most 3600")
        if not 0 < self.webhook_timeout <= 600:
            raise ConfigError(f"TAGGER_WEBHOOK_TIMEOUT={self.webhook_timeout}: seconds, above 0 and at most 600")
        if not 0 <= self.job_retention_days <= 36500:
            raise ConfigError(f"TAGGER_JOB_RETENTION_DAYS={self.job_retention_days}: whole days from 0 to 36500")
        if self.models_keep < 0:
            raise ConfigError(f"TAGGER_MODELS_KEEP={self.models_keep}: 0 (only the active version) or more")
        if not self.xmp_root.strip("| ") or "/" in self.xmp_root or self.xmp_root != self.xmp_root.strip("| "):
            raise ConfigError(
                f"TAGGER_XMP_ROOT={self.xmp_root!r}: a keyword such as tagger or machine|tagger (no leading or "
                "trailing | or space, no /)"
            )
        if self.test_holds not in (0, 1):
            raise ConfigError("TAGGER_TEST_HOLDS must be 0 (production) or 1 (tests)")
        if self.visibility_timeout < 10:
            raise ConfigError("TAGGER_VISIBILITY_TIMEOUT must be at least 10 seconds")
        try:
            zoneinfo.ZoneInfo(self.retrain_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"TAGGER_RETRAIN_TIMEZONE={self.retrain_timezone!r} is not a time zone: use an IANA name such as "
                "UTC, Europe/Paris or Asia/Tokyo"
            ) from None
        # The default is known good (a unit test parses it): Celery's cron parser, which loads Celery, is then
        # not imported by every command, the read commands included.
        problem = _schedule_problem(self.retrain_schedule) if self.retrain_schedule != RETRAIN_SCHEDULE else None
        if problem:
            raise ConfigError(
                f"TAGGER_RETRAIN_SCHEDULE={self.retrain_schedule!r}: {problem}. Use five cron fields "
                "(`0 3 1 * *` is 03:00 on the 1st of each month) or a number of seconds"
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError("TAGGER_LOG_LEVEL: use DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read TAGGER_* variables; an unknown one is an error that names the closest valid one."""
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for var, raw in env.items():
            if not var.startswith(PREFIX):
                continue
            name = var[len(PREFIX) :].lower()
            if _KUBERNETES.fullmatch(name):
                continue  # a Kubernetes Service named `tagger` puts these into every pod
            if name not in known:
                hint = difflib.get_close_matches(name.upper(), [n.upper() for n in known], n=1)
                suggestion = f" Did you mean {PREFIX}{hint[0]}?" if hint else ""
                raise ConfigError(f"unknown setting {var}.{suggestion} Known: {', '.join(_env_names())}")
            values[name] = _parse(var, raw, known[name].type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The settings as TAGGER_* variables, to hand to child processes."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[PREFIX + f.name.upper()] = str(value)
        return out

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# What Kubernetes adds to every pod for a Service named `tagger`: TAGGER_SERVICE_HOST, TAGGER_SERVICE_PORT,
# TAGGER_SERVICE_PORT_<NAME>, TAGGER_PORT and TAGGER_PORT_<N>_<PROTO>[_PROTO|_PORT|_ADDR]. Never settings.
_KUBERNETES = re.compile(r"service_host|service_port(_\w+)?|port(_\d+_(tcp|udp|sctp)(_proto|_port|_addr)?)?")

# Each cron field's range, as Celery's crontab reads it (minute, hour, day of month, month, day of week).
_CRON_FIELDS = (("minute", 60, 0), ("hour", 24, 0), ("day of month", 31, 1), ("month", 12, 1), ("day of week", 7, 0))


def _schedule_problem(value: str) -> str | None:
    """Why `value` is not a retraining schedule Celery beat can run, or None when it is one."""
    parts = value.split()
    if len(parts) == 1:
        try:
            seconds = float(parts[0])
        except ValueError:
            return "not a number of seconds"
        return None if math.isfinite(seconds) and seconds > 0 else "a number of seconds must be finite and above 0"
    if len(parts) != 5:
        return f"{len(parts)} fields, where cron has 5"
    from celery.schedules import ParseException, crontab_parser

    for part, (name, size, first) in zip(parts, _CRON_FIELDS, strict=True):
        try:
            crontab_parser(size, first).parse(part)
        except (ValueError, ParseException) as exc:
            return f"the {name} field {part!r} is out of range or malformed ({exc})"
    return None


def _check_storage_url(var: str, value: str) -> None:
    """file:///absolute/dir or s3://bucket[/prefix], as tagger.storage.open_storage will read it."""
    parsed = urlparse(value)
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise ConfigError(
            f"{var}={value!r} names a host {parsed.netloc!r}: a local folder is file:///absolute/dir (three slashes)"
        )
    if parsed.scheme == "file" and not parsed.path.startswith("/"):
        raise ConfigError(f"{var}={value!r}: a local folder is file:///absolute/dir")
    if parsed.scheme == "s3" and not parsed.netloc:
        raise ConfigError(f"{var}={value!r} names no bucket: use s3://bucket/prefix")
    if parsed.scheme not in _STORAGE_SCHEMES:
        raise ConfigError(f"{var}={value!r}: use file:///absolute/dir or s3://bucket/prefix")


def redacted(name: str, value: object) -> str:
    """A setting as it may be printed: secrets hidden, passwords removed from URLs."""
    text = str(value)
    if name.endswith(("secret", "token")) and text:
        return "********"
    parsed = urlparse(text) if "://" in text else None
    if parsed and parsed.password:
        return text.replace(f":{parsed.password}@", ":********@", 1)
    return text


def _env_names() -> list[str]:
    return [PREFIX + f.name.upper() for f in fields(Settings)]


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, help) rows for the table in docs/operate.md and `tagger config`."""
    rows = []
    for f in fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else ""
        rows.append((PREFIX + f.name.upper(), str(default), f.metadata.get("help", "")))
    return rows


def _parse(var: str, raw: str, type_name: Any) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "float | None":
            return float(raw) if raw.strip() else None
        if kind == "Path":
            return Path(raw)
    except ValueError:
        expected = "an integer" if kind == "int" else "a number"
        raise ConfigError(f"{var}={raw!r} is not {expected}") from None
    return raw
