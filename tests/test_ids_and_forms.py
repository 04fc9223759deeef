"""README "Typing less": reservation id prefixes, positional ids and names, several
ids in one unreserve, and the three forms of extend, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Cli, js, ok

pytestmark = pytest.mark.usefixtures("backend")


def snapshot(cli: Cli) -> Any:
    return js(cli, "list", "--all", "--json"), js(cli, "audit", "log", "--json")


def refused(cli: Cli, code: int, message: str, *args: str) -> None:
    before = snapshot(cli)
    done = cli(*args)
    assert (done.code, done.stdout, done.stderr) == (code, "", f"Error: {message}\n"), args
    assert snapshot(cli) == before


@pytest.fixture
def box(cli: Cli) -> Cli:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "64", "--per-tenant", "unlimited")
    ok(cli, "tenant", "add", "--name", "t")
    return cli


def made(cli: Cli, **options: str) -> str:
    args = ["reserve", "-t", "t", "-p", "p", "--cpu", "1", "--json"]
    for key, value in options.items():
        args += [f"--{key}", value]
    return str(js(cli, *args)["id"])


def test_a_unique_prefix_names_a_reservation_in_any_case(box: Cli):
    rid = made(box)
    assert js(box, "extend", rid[:4], "--ttl", "1h", "--json")["id"] == rid
    assert js(box, "extend", "--id", rid[:9].upper(), "--ttl", "2h", "--json")["ttl"] == 7200
    assert js(box, "unreserve", rid[:5].upper(), "--json")["id"] == rid


def test_an_ambiguous_prefix_names_the_candidates(box: Cli, backend: str):
    # Made behind resgate's back with ids that share a prefix.
    import os

    ids = [f"abcd{n:012x}" for n in range(7)]
    url = os.environ["RESGATE_DB"]
    statement = (
        "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, created_at) "
        "SELECT {mark}, t.id, p.id, 1, 0, 0, 'active', {now} FROM tenants t, pools p"
    )
    if "://" in url:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            for rid in ids:
                conn.execute(statement.format(mark="%s", now="now()"), (rid,))
    else:
        import sqlite3

        with sqlite3.connect(url) as conn:
            for rid in ids:
                conn.execute(
                    statement.format(mark="?", now="strftime('%Y-%m-%d %H:%M:%f', 'now')"), (rid,)
                )
    shown = ", ".join(ids[:5])  # they differ only in the last digit: shown whole
    refused(box, 1, f"reservation prefix 'abcd' is ambiguous: {shown}, …", "unreserve", "abcd")
    refused(box, 1, "reservation prefix 'abcd0000' is ambiguous: " + shown + ", …",
            "extend", "ABCD0000", "--by", "1h")  # fmt: skip
    # Active ones first: once all but one are released, the prefix names that one.
    ok(box, "unreserve", *ids[1:])
    assert js(box, "unreserve", "abcd", "--json")["id"] == ids[0]
    # Then among all: only ended ones match, and more than one.
    refused(box, 1, f"reservation prefix 'abcd' is ambiguous: {shown}, …", "unreserve", "abcd")
    # One ended match: the "not active" refusal, as for its whole id.
    gone = made(box)
    ok(box, "unreserve", gone)
    refused(box, 4, f"reservation '{gone}' is not active (status: released)",
            "unreserve", gone[:6])  # fmt: skip


def test_no_match_is_not_found(box: Cli):
    made(box)
    refused(box, 1, "reservation 'ffff' not found", "unreserve", "ffff")


def test_several_ids_in_one_transaction(box: Cli):
    first, second, third = made(box), made(box), made(box)
    released = js(box, "unreserve", first, second[:6], "--json")
    assert [r["id"] for r in released["released"]] == [first, second]
    # One refused: none released.
    refused(box, 4, f"reservation '{first}' is not active (status: released)",
            "unreserve", third, first)  # fmt: skip
    assert [r["id"] for r in js(box, "list", "--json")] == [third]
    text = ok(box, "unreserve", third, third[:4]).stdout  # the same one twice: once
    assert text == f"Reservation '{third}' released\n"


def test_both_forms_at_once_or_neither_is_exit_2(box: Cli):
    rid = made(box)
    refused(box, 2, "give the reservation ids once: as ID... or with --id, not both",
            "unreserve", rid, "--id", rid)  # fmt: skip
    refused(box, 2, "missing reservation id: give it as ID or with --id", "unreserve")
    refused(box, 2, "give the reservation id once: as ID or --id, not both",
            "extend", rid, "--id", rid, "--ttl", "1h")  # fmt: skip


def test_extend_by_and_until(box: Cli, frozen):
    rid = made(box, ttl="1h")
    assert js(box, "extend", rid, "--by", "30min", "--json")["expires_at"] == (
        "2026-11-24T13:30:00.000000Z"
    )
    assert js(box, "extend", rid, "--until", "2026-11-24T18:00:00Z", "--json")["expires_at"] == (
        "2026-11-24T18:00:00.000000Z"
    )
    assert js(box, "extend", rid, "--until", "+2h", "--json")["expires_at"] == (
        "2026-11-24T14:00:00.000000Z"
    )
    line = ok(box, "extend", rid, "--by", "1h").stdout
    assert line.startswith(f"Reservation '{rid}' now expires ")
    assert line.endswith(" (in 3h0m; 1h later than before)\n")
    line = ok(box, "extend", rid, "--ttl", "30m").stdout
    assert line.endswith(" (in 30m0s; 2h30m earlier than before)\n")
    for args, message in [
        (["--ttl", "1h", "--by", "1h"], "give exactly one of --ttl, --by, --until"),
        ([], "give exactly one of --ttl, --by, --until"),
        (["--by", "0"], "invalid duration for --by: '0' (a duration above 0)"),
        (["--until", "2026-11-24T11:00:00Z"],
         "the new end 2026-11-24T11:00:00.000000Z is not after now"),
    ]:  # fmt: skip
        refused(box, 2, message, "extend", rid, *args)
    endless = made(box)
    refused(box, 4, f"reservation '{endless}' has no end to extend: use --ttl or --until",
            "extend", endless, "--by", "1h")  # fmt: skip


def test_names_as_arguments(box: Cli):
    ok(box, "tenant", "add", "vision", "--priority", "7")
    assert js(box, "tenant", "update", "vision", "--priority", "8", "--json")["priority"] == 8
    ok(box, "pool", "resize", "p", "--cpu", "32")
    ok(box, "pool", "update", "p", "--per-tenant", "2")
    ok(box, "pool", "create", "--name", "q", "--cpu", "1")
    refused(box, 2, "give the pool name once: as NAME or --name, not both",
            "pool", "delete", "q", "--name", "q")  # fmt: skip
    refused(box, 2, "missing tenant name: give it as NAME or --name", "tenant", "remove")
    refused(box, 2, "invalid tenant name 'a b': 1-64 characters, letters, digits, '.', '_' or "
            "'-', starting with a letter or digit", "tenant", "add", "a b")  # fmt: skip
    ok(box, "pool", "delete", "q")
    ok(box, "tenant", "remove", "vision")
    assert [p["name"] for p in js(box, "pool", "list", "--json")] == ["p"]
    assert [t["name"] for t in js(box, "tenant", "list", "--json")] == ["t"]
    assert js(box, "pool", "list", "--json")[0]["total"]["cpu"] == 32


def test_force_says_what_it_releases(box: Cli):
    first, second = made(box), made(box)
    for dry_run in (["--dry-run"], []):
        text = ok(box, "pool", "delete", "p", "--force", *dry_run).stdout.splitlines()
        assert text[-3] == "Pool 'p' deleted; released 2 reservation(s):"
        assert sorted(text[-2:]) == sorted(
            f"  {rid}  tenant=t  cpu=1 mem=0 gpu=0" for rid in (first, second)
        )
    ok(box, "pool", "create", "--name", "p", "--cpu", "8")
    third = made(box)
    shown = js(box, "tenant", "remove", "t", "--force", "--json")
    assert [r["id"] for r in shown["released"]] == [third]
    assert shown["released"][0]["status"] == "released"
