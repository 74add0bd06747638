"""``ragpress pipeline``: validate pipeline YAML here; list, show, diff, apply and roll back on a running server."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ragpress.base.settings import get_settings
from ragpress.cli_common import ApiKey, Server, ask, console, err, fail

YamlFile = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="A pipeline YAML file.")
pipeline_app = typer.Typer(help="Validate, list, show, diff, apply and roll back pipeline YAML on a running server.",
                           no_args_is_help=True)


def _print_problems(problems: list[dict[str, Any]]) -> None:
    for problem in problems:
        where = ", ".join(x for x in (f"line {problem['line']}" if problem.get("line") else "",
                                      problem.get("field") or "") if x)
        err.print(f"[red]invalid[/red] {where + ': ' if where else ''}{problem['message']}")


def _read_yaml(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        fail(f"{file} is not UTF-8 (byte {exc.start}); pipeline YAML is UTF-8 text.")


@pipeline_app.command("validate")
def pipeline_validate(file: Path = YamlFile) -> None:
    """Validate a YAML file (syntax, allowed components, connections, this configuration's cost ceilings)
    without saving it."""
    from ragpress.base.limits import ceilings
    from ragpress.pipelines.loader import PipelineInvalid  # Haystack and the components load only for this command
    from ragpress.pipelines.registry import validate

    text = _read_yaml(file)
    try:
        validate(text, ceilings(get_settings()))
    except PipelineInvalid as exc:
        _print_problems([p.as_dict() for p in exc.problems])
        raise typer.Exit(1) from None
    console.print(f"[green]valid[/green] {file}")


@pipeline_app.command("list")
def pipeline_list(server: Server = None, api_key: ApiKey = None) -> None:
    """The pipelines a query may name: the built-in ones and the tenant's own, each at its current version."""
    table = Table("name", "version", "built-in")
    for row in ask(server, api_key, lambda client: client.pipelines()):
        table.add_row(str(row.get("name")), str(row.get("version")), "yes" if row.get("builtin") else "no")
    console.print(table)


@pipeline_app.command("versions")
def pipeline_versions(name: str, server: Server = None, api_key: ApiKey = None) -> None:
    """A pipeline's saved versions, oldest first (a deleted one is a tombstone)."""
    table = Table("version", "saved", "deleted")
    for row in ask(server, api_key, lambda client: client.pipeline_versions(name)):
        table.add_row(str(row.get("version")), str(row.get("created_at") or "built in"),
                      "yes" if row.get("deleted") else "")
    console.print(table)


@pipeline_app.command("show")
def pipeline_show(name: str, version: int = typer.Option(None), server: Server = None,
                  api_key: ApiKey = None) -> None:
    """Print a saved pipeline's YAML."""
    print(ask(server, api_key, lambda client: client.pipeline(name, version))["yaml"])


@pipeline_app.command("diff")
def pipeline_diff(name: str, file: Path = YamlFile, server: Server = None, api_key: ApiKey = None) -> None:
    """Show how a YAML file differs from the saved pipeline."""
    saved = ask(server, api_key, lambda client: client.pipeline(name))
    diff = difflib.unified_diff(saved["yaml"].splitlines(), _read_yaml(file).splitlines(),
                                f"{name} (v{saved['version']})", str(file), lineterm="")
    print("\n".join(diff) or "no differences")


@pipeline_app.command("apply")
def pipeline_apply(name: str, file: Path = YamlFile, server: Server = None, api_key: ApiKey = None) -> None:
    """Validate and save a YAML file as the pipeline's next version; the next request uses it."""
    saved = ask(server, api_key, lambda client: client.save_pipeline(name, file.read_bytes()))
    console.print(f"[green]saved[/green] {name} version {saved['version']}")


@pipeline_app.command("rollback")
def pipeline_rollback(name: str, version: int = typer.Argument(..., help="The version to bring back."),
                      server: Server = None, api_key: ApiKey = None) -> None:
    """Save an earlier version again as the pipeline's next one; the next request uses it."""
    saved = ask(server, api_key, lambda client: client.rollback_pipeline(name, version))
    console.print(f"[green]rolled back[/green] {name} to version {version}, saved as version {saved['version']}")
