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


def test_numbers_out_of_range_are_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A size no worker could load, no epoch at all, a port that does not exist: one line and exit 2, with
    no database, no labels read and no version registered (the labels file named here does not exist)."""
    import pytest

    monkeypatch.setenv("TAGGER_VAR_DIR", str(tmp_path / "var"))
    train = ["train", "--labels", str(tmp_path / "absent.csv"), "--random-init"]
    refused = [
        [*train, "--size", "3"],
        [*train, "--size", "4096"],
        [*train, "--batch-size", "0"],
        [*train, "--valid-fraction", "1"],
        [*train, "--lr", "0"],
        [*train, "--threshold", "1.5"],
        [*train, "--epochs", "-1"],
        ["serve", "--port", "80999"],
    ]
    for argv in refused:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and "Traceback" not in err, argv
        assert f"argument {argv[-2]}: {argv[-1]} must be" in err, err
    assert main([*train, "--epochs", "0", "--freeze-epochs", "0"]) == 2
    assert "nothing to train" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()  # refused before any database or model store was made


def test_an_artifact_no_worker_could_load_is_never_written(tmp_path: Path) -> None:
    import pytest
    import torch

    from tagger.errors import ArtifactError
    from tagger.model import artifact
    from tagger.model.meta import ArtifactMeta
    from tagger.storage import open_storage

    store = open_storage(tmp_path.as_uri())
    for bad in ({"input_size": 3}, {"tags": []}, {"threshold": 1.0}):
        meta = ArtifactMeta(**{**_META, **bad})  # type: ignore[arg-type]
        with pytest.raises(ArtifactError):
            artifact.save(torch.nn.Linear(1, 1), meta, store)
    assert list(tmp_path.iterdir()) == []


_META = {"version": "m-bad", "arch": "resnet18", "tags": ["night"], "input_size": 32}


def test_a_folder_that_is_not_there_is_not_found(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Exit code 3, as docs/tour.md says, before any database, broker or job (the var folder stays unmade)."""
    monkeypatch.setenv("TAGGER_VAR_DIR", str(tmp_path / "var"))
    missing = str(tmp_path / "nope")
    for argv in (
        ["tag", missing],
        ["tag", f"{missing}/", "--wait"],
        ["tag", "--query", "untagged", "--storage", missing],
    ):
        assert main(argv) == 3, argv
        assert "nothing is there" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()


def test_paths_and_files_a_command_cannot_use_are_one_line_errors(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An output folder that is not there, a folder that cannot be made, a labels file that is not UTF-8:
    one line naming the path or the fix, never a traceback."""
    from tagger.db import make_engine, upgrade
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tagger.db'}")
    upgrade(make_engine(settings.database_url))
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    latin1 = tmp_path / "labels.csv"
    latin1.write_bytes("image_id,tags\nphoto.jpg,night\ncafé.jpg,day\n".encode("latin-1"))
    (tmp_path / "stills").mkdir()
    cases = [
        (["export", "-o", str(tmp_path / "no" / "such" / "x.csv")], 3, f"{tmp_path / 'no' / 'such' / 'x.csv'}"),
        (["sample", "/proc/no-such/stills", "--count", "2"], 3, "/proc/no-such"),
        (["labels", "import", str(latin1), "--storage", str(tmp_path / "stills")], 2, "is not UTF-8 text (byte 0xe9)"),
    ]
    for argv, code, said in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("tagger: error: ") and said in err and len(err.strip().splitlines()) == 1, err
