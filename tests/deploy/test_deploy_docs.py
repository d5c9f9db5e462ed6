"""docs/deploy.md: its settings file lists every setting the portal reads, and is a production configuration once its
placeholders are filled in (read the way its wrapper reads it: `sh`, `set -a`)."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

from config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()


def env_block() -> str:
    return re.search(r"```sh\n(# --- required in production.*?)```", DOC, re.S).group(1)


def settings_the_portal_reads() -> set[str]:
    source = (ROOT / "config" / "__init__.py").read_text()
    names = {
        name if name.startswith("MYHUG_") else f"MYHUG_{name}" for name in re.findall(r'\bget\("([A-Z_]+)"', source)
    }
    return names


def test_the_settings_file_names_every_setting():
    listed = set(re.findall(r"^(MYHUG_[A-Z_]+)=", env_block(), re.M))
    assert settings_the_portal_reads() - listed == set()
    assert listed - settings_the_portal_reads() == set()  # nothing the portal would ignore


def filled_settings() -> str:
    """The settings file of the doc with its placeholders filled in: new keys, `placeholder` for the other values."""
    filled = env_block()
    filled = filled.replace("<48 random bytes, from the command above>", secrets.token_urlsafe(48))
    filled = filled.replace("<32 random bytes, from the command above>", secrets.token_urlsafe(32))
    return re.sub(r"<[^>\n]*>(?=[@\n])", "placeholder", filled.replace("myhug:<DB_PASSWORD>@", "myhug:pw@"))


def read_by_sh(env_file: Path) -> dict[str, str]:
    """The MYHUG_* variables of a settings file read the way the doc's wrapper reads it: `sh`, `set -a`."""
    printed = subprocess.run(
        ["sh", "-c", 'set -a && . "$1" && set +a && env -0', "sh", str(env_file)],
        capture_output=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.decode()
    return dict(item.split("=", 1) for item in printed.split("\0") if item.startswith("MYHUG_"))


def test_the_settings_file_read_by_sh_is_a_production_configuration(tmp_path):
    env_file = tmp_path / "myhug.env"
    env_file.write_text(filled_settings())
    environ = read_by_sh(env_file)
    config = load_config(environ, instance_path=tmp_path / "instance")
    assert config["MYHUG_ENV"] == "production"
    assert config["MAIL_DEFAULT_SENDER"] == "myHUG <myhug@hcuge.ch>"
    assert config["LOGIN_RATE_LIMIT"] == "20 per minute;200 per hour"
    assert config["TRUSTED_PROXIES"] == 1 and config["JOBS_IN_PROCESS"] is False
    assert config["DATABASE_URL"] == "postgresql://myhug:pw@127.0.0.1:5432/myhug"
