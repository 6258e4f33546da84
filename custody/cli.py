"""The ``custody`` command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="MPC custody service command line."
)
console = Console()


@app.callback()
def _root() -> None:
    """MPC custody: threshold keys and signatures, no single holder of a key."""


@app.command()
def demo(
    threshold: int = typer.Option(2, "--threshold", "-t", help="signers needed"),
    nodes: int = typer.Option(3, "--nodes", "-n", help="share holders"),
) -> None:
    """Run the in-process demo: DKG, threshold signing, independent verification, refresh."""
    from custody.demo import run_demo

    if not 1 <= threshold <= nodes <= 15:
        console.print("[red]error[/red] INVALID_ARGUMENT: need 1 <= threshold <= nodes <= 15")
        raise typer.Exit(2)
    console.print(
        f"[bold]MPC custody demo[/bold]: {nodes} simulated signer nodes, any {threshold} sign; "
        "no node ever holds a whole key.\n"
        "[dim]In-process: the production protocol cores over a simulated network "
        "(node processes, gRPC and persistence are not built yet).[/dim]"
    )
    table = Table("scheme", "step", "detail", "result")
    lines = run_demo(threshold, nodes)
    for line in lines:
        table.add_row(
            line.scheme,
            line.step,
            line.detail,
            "[green]ok[/green]" if line.ok else "[red]FAILED[/red]",
        )
    console.print(table)
    if not all(line.ok for line in lines):
        raise typer.Exit(1)
    console.print("[green]all signatures verified by independent libraries[/green]")


def main() -> None:
    app()
