from __future__ import annotations

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


def test_compose_uses_only_real_commands_and_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "postgres", "s3", "worker", "beat", "trainer"} <= set(services)
    known_vars = {var for var, _, _ in describe()}
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for name, service in services.items():
        env = service.get("environment", {})
        for var in env:
            if var.startswith("TAGGER_"):
                assert var in known_vars, f"{name}: {var} is not a setting"
        command = service.get("command")
        if name in ("worker", "tag", "migrate", "beat", "trainer") and command:
            argv = command if isinstance(command, list) else command.split()
            assert argv[0] in commands, f"{name}: `tagger {argv[0]}` does not exist"
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:  # --help exits 0; an unknown option exits 2
                assert exc.code == 0, f"{name}: {argv} is not a valid tagger command line"
        if name == "worker":
            devices = service["deploy"]["resources"]["reservations"]["devices"]
            assert devices[0]["capabilities"] == ["gpu"]
            Settings.from_env({k: str(v) for k, v in env.items() if k.startswith("TAGGER_")})


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
