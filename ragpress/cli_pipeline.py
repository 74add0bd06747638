"""``ragpress pipeline``: validate pipeline YAML here; show, diff and apply it on a running server."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import typer

from ragpress.base.settings import get_settings
from ragpress.cli_common import ask, console, err

pipeline_app = typer.Typer(help="Validate, show, diff and apply pipeline YAML on a running server.",
                           no_args_is_help=True)


def _print_problems(problems: list[dict[str, Any]]) -> None:
    for problem in problems:
        where = ", ".join(x for x in (f"line {problem['line']}" if problem.get("line") else "",
                                      problem.get("field") or "") if x)
        err.print(f"[red]invalid[/red] {where + ': ' if where else ''}{problem['message']}")


@pipeline_app.command("validate")
def pipeline_validate(file: Path) -> None:
    """Validate a YAML file (syntax, allowed components, connections, this configuration's cost ceilings)
    without saving it."""
    from ragpress.base.limits import ceilings
    from ragpress.pipelines.loader import PipelineInvalid  # Haystack and the components load only for this command
    from ragpress.pipelines.registry import validate

    text = file.read_text(encoding="utf-8")
    try:
        validate(text, ceilings(get_settings()))
    except PipelineInvalid as exc:
        _print_problems([p.as_dict() for p in exc.problems])
        raise typer.Exit(1) from None
    console.print(f"[green]valid[/green] {file}")


@pipeline_app.command("show")
def pipeline_show(name: str, version: int = typer.Option(None), server: str = typer.Option(None)) -> None:
    """Print a saved pipeline's YAML."""
    print(ask(server, lambda client: client.pipeline(name, version))["yaml"])


@pipeline_app.command("diff")
def pipeline_diff(name: str, file: Path, server: str = typer.Option(None)) -> None:
    """Show how a YAML file differs from the saved pipeline."""
    saved = ask(server, lambda client: client.pipeline(name))
    diff = difflib.unified_diff(saved["yaml"].splitlines(), file.read_text(encoding="utf-8").splitlines(),
                                f"{name} (v{saved['version']})", str(file), lineterm="")
    print("\n".join(diff) or "no differences")


@pipeline_app.command("apply")
def pipeline_apply(name: str, file: Path, server: str = typer.Option(None)) -> None:
    """Validate and save a YAML file as the pipeline's next version; the next request uses it."""
    saved = ask(server, lambda client: client.save_pipeline(name, file.read_bytes()))
    console.print(f"[green]saved[/green] {name} version {saved['version']}")
