"""README "Being told what to do" and "Typing less": hints on refusals, global
options after the command, `--quiet`, and the help page, on both databases where a
database is involved."""

from __future__ import annotations

import re

import pytest
from helpers import Cli, js, ok

from resgate.cli.help import GROUPS


def fails(cli: Cli, code: int, *args: str) -> str:
    done = cli(*args)
    assert (done.code, done.stdout) == (code, ""), done
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1
    return done.stderr[len("Error: ") : -1]


@pytest.fixture
def box(cli: Cli, backend: str) -> Cli:
    ok(cli, "pool", "create", "--name", "gpu-box", "--cpu", "8", "--gpu", "2")
    ok(cli, "tenant", "add", "--name", "boss", "--priority", "9")
    ok(cli, "tenant", "add", "--name", "intern", "--priority", "1")
    return cli


def test_a_near_name_is_suggested_else_the_list_command(box: Cli):
    assert fails(box, 1, "pool", "show", "--name", "gpubox") == (
        "pool 'gpubox' not found (did you mean 'gpu-box'?)"
    )
    assert fails(box, 1, "reserve", "-t", "bos", "-p", "gpu-box", "--cpu", "1") == (
        "tenant 'bos' not found (did you mean 'boss'?)"
    )
    assert fails(box, 1, "list", "--pool", "zzz") == "pool 'zzz' not found (see: resgate pool list)"
    assert fails(box, 4, "tenant", "add", "boss") == (
        "tenant 'boss' already exists (to change it: resgate tenant update boss …)"
    )


def test_the_preempt_hint_only_where_it_would_help(box: Cli):
    ok(box, "reserve", "-t", "intern", "--gpu", "2")
    message = fails(box, 3, "reserve", "-t", "boss", "--gpu", "1")
    assert message.endswith("; 'boss' outranks holders of it: add --preempt to evict them")
    # The intern outranks nobody; and cpu is not held by anyone lower.
    ok(box, "tenant", "add", "--name", "peer", "--priority", "1")
    assert "outranks" not in fails(box, 3, "reserve", "-t", "peer", "--gpu", "1")
    assert "outranks" not in fails(box, 3, "reserve", "-t", "boss", "--cpu", "9")


def test_global_options_after_the_command(cli: Cli, tmp_path):
    other = tmp_path / "other.db"
    ok(cli, "pool", "create", "--name", "p", "--cpu", "1", "--db", str(other))
    assert [p["name"] for p in js(cli, "pool", "list", "--json", f"--db={other}")] == ["p"]
    assert js(cli, "pool", "list", "--json") == []  # RESGATE_DB's database is another
    assert fails(cli, 2, "--db", str(other), "list", "--db", "x.db") == (
        f"--db given twice with different values: '{other}' and 'x.db'"
    )
    ok(cli, "--db", str(other), "list", "--db", str(other))  # the same twice is fine


def test_nothing_after_a_double_dash_is_resgates(cli: Cli, tmp_path):
    """`run -- cmd --db x` passes `--db x` to the job."""
    ok(cli, "pool", "create", "--name", "p", "--cpu", "1")
    ok(cli, "tenant", "add", "--name", "t")
    out = tmp_path / "args"
    done = cli("run", "-t", "t", "-p", "p", "--cpu", "1", "--", "sh", "-c",
               f'printf "%s " "$@" > {out}', "sh", "--db", "x.db", "--color", "never")  # fmt: skip
    assert done.code == 0, done
    assert out.read_text() == "--db x.db --color never "


def test_quiet_prints_only_the_id(cli: Cli):
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    ok(cli, "tenant", "add", "--name", "t")
    printed = ok(cli, "reserve", "-q", "-t", "t", "--cpu", "1").stdout
    assert printed == js(cli, "list", "--json")[0]["id"] + "\n"
    assert fails(cli, 2, "reserve", "-q", "--json", "-t", "t", "--cpu", "1") == (
        "--quiet and --json do not go together: choose one"
    )


def test_resgate_alone_prints_the_help_and_succeeds(cli: Cli):
    done = cli()
    assert (done.code, done.stderr) == (0, "")
    assert done.stdout.startswith("Usage: resgate")


def test_the_help_lists_every_command_in_a_group_uncut(cli: Cli):
    page = ok(cli, "--help").stdout
    headings = [line[:-1] for line in page.splitlines() if line.endswith(":") and line[0] != " "]
    assert headings[:2] == ["Options", "Reservations"]
    assert "Other commands" not in headings
    for group, names in GROUPS.items():
        present = [name for name in names if f"\n  {name} " in page]
        if present:
            assert group in headings
    for sub in ("pool", "tenant", "db", "audit", None):
        text = ok(cli, *((sub,) if sub else ()), "--help").stdout
        body = text.split("\n", 1)[1]  # past `Usage: resgate pool [OPTIONS] COMMAND [ARGS]...`
        assert "..." not in body, text


@pytest.mark.postgres
def test_postgres_urls_as_libpq_writes_them(cli: Cli, pg_database: str):
    for scheme in ("postgres://", "postgresql://"):
        url = pg_database.replace("postgresql+psycopg://", scheme)
        ok(cli, "--db", url, "pool", "create", "--name", scheme.rstrip(":/"), "--cpu", "1")
    names = [p["name"] for p in js(cli, "--db", pg_database, "pool", "list", "--json")]
    assert names == ["postgres", "postgresql"]


def _commands(group, prefix=""):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_ends_its_help_with_examples_of_itself(cli: Cli):
    import typer

    from resgate.cli import app

    paths = dict(_commands(typer.main.get_command(app)))
    for path in paths:
        page = ok(cli, *path.split(), "--help").stdout
        examples = page.split("Examples:\n", 1)[1].splitlines() if "Examples:" in page else []
        assert 2 <= len(examples) <= 3, (path, page)
        assert "<str>" not in page and "<int>" not in page, (path, page)  # a metavar says what
        for example in examples:
            # Each runs the command it illustrates (maybe after global options).
            assert re.search(rf"\bresgate\b.* {re.escape(path)}\b", example), (path, example)
