"""README "Sharing one machine": tenants and their members, the default tenant and
pool, and admins, through the CLI on both databases. The caller is the OS user
running the tests (`os_user()`); other names are people who are not here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import Cli, js, ok, reserve_id

from resgate.config import os_user

pytestmark = pytest.mark.usefixtures("backend")

ME = os_user()


@pytest.fixture
def system(isolated_env: Path) -> Path:
    """Where in-process commands look for /etc/resgate/config.toml (conftest)."""
    return isolated_env / "etc" / "config.toml"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def snapshot(cli: Cli) -> Any:
    """Everything a refusal must leave as it was."""
    return [
        js(cli, *args)
        for args in (
            ("list", "--all", "--json"),
            ("tenant", "list", "--json"),
            ("pool", "list", "--json"),
            ("audit", "log", "--json"),
        )
    ]


def refused(cli: Cli, code: int, message: str, *args: str) -> None:
    before = snapshot(cli)
    done = cli(*args)
    assert (done.code, done.stdout, done.stderr) == (code, "", f"Error: {message}\n")
    assert snapshot(cli) == before


@pytest.fixture
def lab(cli: Cli) -> Cli:
    ok(cli, "pool", "create", "--name", "gpu", "--gpu", "4", "--cpu", "8", "--per-tenant", "2")
    ok(cli, "tenant", "add", "--name", "nlp", "--members", f"{ME},alice", "--priority", "3")
    ok(cli, "tenant", "add", "--name", "vision", "--members", "bob", "--priority", "7")
    ok(cli, "tenant", "add", "--name", "open", "--priority", "1")
    return cli


def test_members_are_stored_sorted_shown_and_cleared(lab: Cli):
    tenants = {t["name"]: t["members"] for t in js(lab, "tenant", "list", "--json")}
    assert tenants == {"nlp": sorted([ME, "alice"]), "vision": ["bob"], "open": []}
    table = ok(lab, "tenant", "list").stdout.splitlines()
    assert table[0].split()[-1] == "MEMBERS"
    assert table[-1].split()[0] == "open" and table[-1].split()[-1] == "-"  # anyone may act
    updated = js(lab, "tenant", "update", "--name", "vision", "--members", "zoe,bob,zoe", "--json")
    assert updated["members"] == ["bob", "zoe"]
    cleared = js(lab, "tenant", "update", "--name", "vision", "--members", "none", "--json")
    assert cleared["members"] == []
    events = [e for e in js(lab, "audit", "log", "--json") if e["subject"] == "vision"]
    assert events[0]["data"]["members"] == ["bob"]
    assert [e["data"]["new"]["members"] for e in events[1:]] == [["bob", "zoe"], []]
    assert [e["data"]["old"]["members"] for e in events[1:]] == [["bob"], ["bob", "zoe"]]
    # A tenant made without members keeps tenant.add's earlier payload.
    open_add = next(e for e in js(lab, "audit", "log", "--json") if e["subject"] == "open")
    assert open_add["data"] == {"priority": 1, "max": {"cpu": None, "memory": None, "gpu": None}}


@pytest.mark.parametrize(
    ("bad", "name"),
    [("alice,none", "none"), ("a b", "a b"), ("x" * 65, "x" * 65), ("", ""), ("al!ce", "al!ce"),
     ("alice,,bob", "")],
)  # fmt: skip
def test_bad_member_names_are_exit_2(lab: Cli, bad: str, name: str):
    """`--members none` clears them; in a list, `none` is no name."""
    shown = repr(name)
    refused(
        lab,
        2,
        f"invalid member name {shown}: 1-64 characters, letters, digits, '.', '_', '@' or '-' "
        "(and not 'none')",
        "tenant", "update", "--name", "open", "--members", bad,
    )  # fmt: skip


def test_membership_refusals(cli: Cli):
    ok(cli, "pool", "create", "--name", "gpu", "--gpu", "4", "--cpu", "8")
    ok(cli, "tenant", "add", "--name", "vision", "--priority", "7")
    ok(cli, "tenant", "add", "--name", "low", "--priority", "1")
    theirs = reserve_id(cli, "vision", "gpu", gpu=1)
    ok(cli, "reserve", "--tenant", "low", "--pool", "gpu", "--cpu", "1")
    ok(cli, "tenant", "update", "--name", "vision", "--members", "bob")
    message = f"user '{ME}' is not a member of tenant 'vision'"
    refused(cli, 4, message, "reserve", "--tenant", "vision", "--pool", "gpu", "--cpu", "1")
    refused(cli, 4, message, "reserve", "--tenant", "vision", "--pool", "gpu", "--gpu", "4",
            "--preempt")  # fmt: skip
    refused(cli, 4, message, "extend", "--id", theirs, "--ttl", "1h")
    refused(cli, 4, message, "unreserve", "--id", theirs)
    refused(cli, 4, message, "preempt", "--tenant", "vision", "--target", "low")
    refused(cli, 4, message, "unreserve", "--id", theirs, "--dry-run")
    # Being the target of a preemption needs no membership; RESGATE_ACTOR changes nothing.
    os.environ["RESGATE_ACTOR"] = "bob"
    try:
        refused(cli, 4, message, "unreserve", "--id", theirs)
    finally:
        del os.environ["RESGATE_ACTOR"]
    ok(cli, "tenant", "update", "--name", "vision", "--members", f"bob,{ME}")
    ok(cli, "extend", "--id", theirs, "--ttl", "1h")
    ok(cli, "preempt", "--tenant", "vision", "--target", "low")
    ok(cli, "unreserve", "--id", theirs)


def test_check_order_tenant_then_pool_then_membership(cli: Cli):
    ok(cli, "pool", "create", "--name", "gpu", "--cpu", "8")
    ok(cli, "tenant", "add", "--name", "vision", "--members", "bob")
    refused(cli, 1, "tenant 'nobody' not found (see: resgate tenant list)",
            "reserve", "--tenant", "nobody", "--pool", "nowhere", "--cpu", "1")  # fmt: skip
    refused(cli, 1, "pool 'nowhere' not found (see: resgate pool list)",
            "reserve", "--tenant", "vision", "--pool", "nowhere", "--cpu", "1")  # fmt: skip
    refused(cli, 4, f"user '{ME}' is not a member of tenant 'vision'", "reserve", "--tenant",
            "vision", "--pool", "gpu", "--cpu", "100")  # fmt: skip


# ---------------------------------------------------------------- defaults


def test_default_tenant_is_the_setting_else_my_one_tenant(lab: Cli, monkeypatch, system: Path):
    made = js(lab, "reserve", "--pool", "gpu", "--cpu", "1", "--json")
    assert made["tenant"] == "nlp"  # the one tenant that names me
    monkeypatch.setenv("RESGATE_TENANT", "open")
    assert js(lab, "reserve", "--pool", "gpu", "--cpu", "1", "--json")["tenant"] == "open"
    monkeypatch.delenv("RESGATE_TENANT")
    write(system, 'tenant = "open"\n')
    assert js(lab, "reserve", "--pool", "gpu", "--cpu", "1", "--json")["tenant"] == "open"
    assert js(lab, "reserve", "--tenant", "nlp", "--cpu", "1", "--json")["tenant"] == "nlp"


def test_no_default_tenant_says_which_i_belong_to(cli: Cli):
    ok(cli, "pool", "create", "--name", "gpu", "--cpu", "8")
    ok(cli, "tenant", "add", "--name", "vision")
    refused(cli, 2, "no tenant given: use --tenant (you are a member of no tenant)",
            "reserve", "--cpu", "1")  # fmt: skip
    ok(cli, "tenant", "update", "--name", "vision", "--members", ME)
    ok(cli, "tenant", "add", "--name", "nlp", "--members", f"alice,{ME}")
    refused(cli, 2, "no tenant given: use --tenant (you are a member of: nlp, vision)",
            "reserve", "--cpu", "1")  # fmt: skip
    ok(cli, "tenant", "remove", "--name", "nlp")  # a removed tenant is no default
    assert js(cli, "reserve", "--cpu", "1", "--json")["tenant"] == "vision"


def test_default_pool_is_the_setting_else_the_only_pool(cli: Cli, monkeypatch):
    ok(cli, "tenant", "add", "--name", "t")
    refused(cli, 2, "no pool given: use --pool (pools: none yet)",
            "reserve", "--tenant", "t", "--cpu", "1")  # fmt: skip
    ok(cli, "pool", "create", "--name", "b", "--cpu", "8")
    assert js(cli, "reserve", "--tenant", "t", "--cpu", "1", "--json")["pool"] == "b"
    ok(cli, "pool", "create", "--name", "a", "--cpu", "8")
    refused(cli, 2, "no pool given: use --pool (pools: a, b)",
            "reserve", "--tenant", "t", "--cpu", "1")  # fmt: skip
    monkeypatch.setenv("RESGATE_POOL", "a")
    assert js(cli, "reserve", "--tenant", "t", "--cpu", "1", "--json")["pool"] == "a"


# ---------------------------------------------------------------- admins


def test_admins_alone_change_pools_and_tenants(cli: Cli, system: Path, isolated_env: Path):
    write(system, 'admins = ["alice"]\n')
    db = Path(os.environ["RESGATE_DB"]) if "://" not in os.environ["RESGATE_DB"] else None
    where = f"(see admins in {system})"
    for args, what in [
        (("pool", "create", "--name", "p", "--cpu", "1"), "change pools"),
        (("tenant", "add", "--name", "t"), "change tenants"),
    ]:
        done = cli(*args)
        assert (done.code, done.stdout) == (4, "")
        assert done.stderr == f"Error: only admins may {what} {where}\n"
    if db is not None:
        assert not db.exists()  # refused before any database was opened
    write(system, f'admins = ["alice", "{ME}"]\n')
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    ok(cli, "tenant", "add", "--name", "t", "--members", "bob")
    ok(cli, "reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")  # an admin acts for anyone
    write(system, 'admins = ["alice"]\n')
    for args, what in [
        (("pool", "resize", "--name", "p", "--cpu", "8"), "change pools"),
        (("pool", "update", "p", "--per-tenant", "2"), "change pools"),
        (("pool", "delete", "--name", "p", "--force"), "change pools"),
        (("tenant", "update", "--name", "t", "--priority", "9"), "change tenants"),
        (("tenant", "remove", "--name", "t", "--force"), "change tenants"),
    ]:
        refused(cli, 4, f"only admins may {what} {where}", *args)
    state = isolated_env / "state.json"
    state.write_text(json.dumps({"pools": {}, "tenants": {}, "reservations": {}}))
    refused(cli, 4, f"only admins may import state {where}", "import-state", str(state))
    # Reading stays open to everyone.
    assert [p["name"] for p in js(cli, "pool", "list", "--json")] == ["p"]


def test_syntax_errors_come_before_the_admin_rule(cli: Cli, system: Path):
    write(system, 'admins = ["alice"]\n')
    done = cli("pool", "create", "--name", "bad name", "--cpu", "1")
    assert done.code == 2 and "invalid pool name" in done.stderr


def test_only_admins_create_or_upgrade_the_database(cli: Cli, system: Path, backend: str):
    """While admins are set, a write that would create the schema is refused for
    anyone else (exit 1, nothing made), and db init / db upgrade are admins' (exit 4);
    reading a database that does not exist yet still shows it empty."""
    if backend == "postgresql":  # an empty database on the server, as a new team's
        import psycopg

        url = os.environ["RESGATE_DB"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
    write(system, 'admins = ["alice"]\n')
    done = cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
    assert (done.code, done.stdout) == (1, "")
    assert done.stderr == (
        "Error: the database needs an upgrade: ask an admin to run resgate db upgrade\n"
    )
    assert js(cli, "pool", "list", "--json") == []
    for args in (("db", "upgrade"), ("db", "init")):
        done = cli(*args)
        assert (done.code, done.stdout) == (4, "")
        assert done.stderr == (
            f"Error: only admins may upgrade the database (see admins in {system})\n"
        )
    if backend == "sqlite":
        assert not Path(os.environ["RESGATE_DB"]).exists()
    write(system, f'admins = ["alice", "{ME}"]\n')
    ok(cli, "db", "init")
    write(system, 'admins = ["alice"]\n')
    assert js(cli, "tenant", "list", "--json") == []  # current: reading is open to all
