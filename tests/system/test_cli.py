"""`tagger` commands as separate processes, against a real Redis."""

from __future__ import annotations

from pathlib import Path


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
