from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tagger.cli import build_parser, main
from tagger.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys) -> None:  # type: ignore[no-untyped-def]
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    expected = {"demo", "sample", "worker", "beat", "tag", "train", "results", "export", "models", "labels"}
    assert expected | {"jobs", "db", "config"} <= commands
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("    ")}
    assert commands <= listed  # each command has its own line of help, not just a matching substring


def test_worker_without_broker_exits_with_config_code(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TAGGER_BROKER_URL", raising=False)
    assert main(["worker"]) == 2
    assert "TAGGER_BROKER_URL" in capsys.readouterr().err


def test_unknown_setting_exits_with_config_code(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TAGGER_THRESHHOLD", "0.3")
    assert main(["config"]) == 2
    assert "Did you mean TAGGER_THRESHOLD" in capsys.readouterr().err


def test_tag_without_a_model_says_how_to_get_one(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TAGGER_VAR_DIR", str(tmp_path / "var"))
    (tmp_path / "stills").mkdir()
    assert main(["tag", str(tmp_path / "stills")]) == 3
    assert "tagger train" in capsys.readouterr().err


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
    readme = (ROOT / "README.md").read_text()
    for line in lines:
        assert f"docker compose run --rm tagger {line}" in readme, line


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


def test_read_only_commands_and_a_query_submission_never_import_torch(tmp_path: Path, redis_url: str) -> None:
    """`tagger labels stats`, `jobs list`, `models list` and `tag --query untagged` (no --wait) stay light."""
    import subprocess
    import sys

    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tests.conftest import make_model, make_settings

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}", broker_url=redis_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    make_model(settings, make_sessionmaker(engine))
    engine.dispose()
    for argv in (
        ["labels", "stats"],
        ["jobs", "list"],
        ["models", "list"],
        ["tag", "--query", "untagged"],
    ):
        code = (
            "import sys\n"
            "from tagger.cli import main\n"
            f"code = main({argv!r})\n"
            "heavy = sorted(m for m in ('torch', 'torchvision') if m in sys.modules)\n"
            "assert code == 0 and not heavy, (code, heavy)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], env=settings.as_env(), capture_output=True, text=True)
        assert done.returncode == 0, (argv, done.stderr[-2000:])


def test_models_show_says_when_a_version_has_no_training_record(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A version registered without `tagger train` (imported, benchmark) shows no 'None rows' line."""
    from tagger.db import make_engine, make_sessionmaker, upgrade
    from tests.conftest import make_model, make_settings

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    version = make_model(settings, make_sessionmaker(engine))
    engine.dispose()
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["models", "show", version]) == 0
    out = capsys.readouterr().out
    assert f"version   {version}" in out and "training  no record" in out and "None" not in out
