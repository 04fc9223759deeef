"""Developer tasks, and the one definition of what CI checks: `.ci/run` starts a
throwaway PostgreSQL and runs `nox -s lint typecheck tests-all`.

    nox                   lint, typecheck and the quick tests (-m "not slow")
    nox -s tests-all      every test, the multi-process ones too
    nox -s build          the sdist and wheel, into dist/
    nox -s bench          the speed figures of benchmarks/README.md

The test sessions install the package (not an editable checkout), so the tests
run against what `pip install .` gives a user."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"  # the standard library's; nothing else to install

TYPE_STUBS = ["mypy", "types-tabulate", "types-colorama"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: style, imports, complexity, formatting, and the ban on heavy imports in
    the CLI entry path."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on the package."""
    session.install(".[postgres]", *TYPE_STUBS)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """The quick run: everything but the multi-process tests marked slow."""
    session.install(".[test,postgres]")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session(name="tests-all")
def tests_all(session: nox.Session) -> None:
    """The whole suite, as CI runs it."""
    session.install(".[test,postgres]")
    session.run("pytest", *session.posargs)


@nox.session(default=False)
def build(session: nox.Session) -> None:
    """The sdist and the wheel, into dist/."""
    session.install("build")
    session.run("python", "-m", "build", "--outdir", "dist")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """The benchmarks of benchmarks/README.md (python benchmarks/run.py)."""
    session.install(".[postgres]")
    session.run("python", "benchmarks/run.py", *session.posargs)
