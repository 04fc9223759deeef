"""No password reaches any output (README, "Where the data lives"): whatever
characters it holds, however it is given, whatever goes wrong, and with
RESGATE_DEBUG=1 too. Masking follows the URL's structure (resgate/passwords.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import harness
import pytest
from harness import resgate_command
from helpers import free_port

from resgate.passwords import hide, hide_in_url, url_passwords

# Every shape that defeated a pattern over the text: an unencoded `/`, `?`, `#`,
# a percent-encoded `@`, and the password as a query parameter.
PASSWORDS = ["pa/ss-w0rd", "pa?ss-w0rd", "pa#ss-w0rd", "pa%40ss-w0rd"]


def urls(base: str) -> list[tuple[str, str]]:
    """(URL, the password as written) for each shape, on `base` (user@host:port/db)."""
    user, _, rest = base.partition("@")
    shapes = [(f"{user}:{password}@{rest}", password) for password in PASSWORDS]
    shapes.append((f"{base}?password=qu%2Fery-secret", "qu%2Fery-secret"))
    return shapes


def leaked(text: str, password: str) -> bool:
    decoded = password.replace("%40", "@").replace("%2F", "/")
    pieces = {password, decoded, *[p for p in decoded.replace("/", " ").split() if len(p) > 3]}
    return any(piece in text for piece in pieces)


def resgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*resgate_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=harness.env(**(env or {})),
    )


def test_hidden_by_position_whatever_the_password_holds() -> None:
    for url, password in urls("postgresql+psycopg://alice@db.example:5432/resgate"):
        shown = hide_in_url(url)
        assert not leaked(shown, password), shown
        assert shown.startswith("postgresql+psycopg://alice")
        assert "db.example:5432/resgate" in shown
        assert password in url_passwords(url)
        assert not leaked(hide(f"it said {url} and {password}", [url]), password)


def test_an_at_sign_in_the_password_is_refused_without_showing_it() -> None:
    url = "postgresql+psycopg://alice:p@ss-w0rd@127.0.0.1:1/resgate"
    result = resgate("--db", url, "list")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: ambiguous database URL: postgresql+psycopg://alice:***@"
    )
    assert "ss-w0rd" not in result.stderr


@pytest.mark.postgres
@pytest.mark.parametrize("debug", ["0", "1"])
def test_connect_failures_never_show_it(debug: str) -> None:
    port = free_port()
    for url, password in urls(f"postgresql+psycopg://alice@127.0.0.1:{port}/resgate"):
        for args in (["list"], ["pool", "create", "--name", "p", "--cpu", "1"], ["db", "upgrade"]):
            result = resgate("--db", url, *args, env={"RESGATE_DEBUG": debug})
            assert result.returncode == 1, result.stderr
            assert "cannot connect to PostgreSQL" in result.stderr
            assert not leaked(result.stderr + result.stdout, password), result.stderr
            if debug == "1":
                assert "Traceback" in result.stderr


@pytest.mark.postgres
def test_wrong_revision_and_read_only_never_show_it(pg_database: str) -> None:
    import psycopg

    name = pg_database.rsplit("/", 1)[1]
    plain = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    # The test server trusts local connections: the password is carried, not checked.
    for url, password in urls(pg_database):
        result = resgate("--db", url, "pool", "create", "--name", "p", "--cpu", "1")
        assert result.returncode == 1
        assert "read-only" in result.stderr, result.stderr
        assert not leaked(result.stderr, password), result.stderr
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("SET default_transaction_read_only = off")
        connection.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffff'")
    for url, password in urls(pg_database):
        for debug in ("0", "1"):
            result = resgate("--db", url, "list", env={"RESGATE_DEBUG": debug})
            assert result.returncode == 1
            assert "ffff" in result.stderr, result.stderr
            assert not leaked(result.stderr, password), result.stderr


def test_sqlite_paths_are_not_touched_by_masking(tmp_path: Path) -> None:
    # A file name with `:` and `@` is not a URL: shown whole.
    path = tmp_path / "a:b@c.db"
    result = resgate("--db", str(path), "pool", "create", "--name", "p", "--cpu", "1")
    assert result.returncode == 0, result.stderr
    path.write_text("not sqlite")
    result = resgate("--db", str(path), "list")
    assert result.returncode == 1 and str(path) in result.stderr
