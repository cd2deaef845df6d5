"""docs/reference/cli.md from the `openmonetize` click group itself: every command's `--help`.

The group is found through the console script's entry point (pyproject.toml
`[project.scripts]`), not a module path, so moving the CLI's modules does not break this page.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

from deploy.docs_gen.markdown import banner

PROGRAM = "openmonetize"
WIDTH = 100  # help is wrapped to this width whatever the terminal

INTRO = """\
Every level has `--help`; this page is that help, command by command. Errors an operator can fix
(a port in use, a service that does not answer, invalid settings, a missing extra) print one
`error:` line naming the cause and exit non-zero; `stack status` exits 3 when a managed service
is down, and below the services shows each consumer group of the pipeline (the worker's, both
sinks'): its members and its lag, with the partition furthest behind (per partition with
`--json`). Settings come from the environment ([settings](settings.md)).

"""


def main_group() -> click.Command:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == PROGRAM]
    return script.load()


def render() -> str:
    root = main_group()
    out = [banner("The `openmonetize` command", "the click group of the `openmonetize` console script"), INTRO]
    commands = list(_walk(root, _context(root, PROGRAM, None)))
    out.append("## Commands\n\n" + "".join(f"- [`{' '.join(path)}`](#{_anchor(path)})\n" for path, _ in commands) + "\n")
    for path, ctx in commands:
        out.append(f"## {' '.join(path)}\n\n```text\n{ctx.command.get_help(ctx).rstrip()}\n```\n\n")
    return "".join(out).rstrip("\n") + "\n"


def _walk(command: click.Command, ctx: click.Context):
    """The command and every subcommand below it, depth first, in name order; hidden ones left out."""
    yield ctx.command_path.split(), ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(sub, _context(sub, name, ctx))


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """The context `--help` would run in (the command's own context settings, -h included), at a fixed width."""
    return command.make_context(name, [], parent=parent, resilient_parsing=True,
                                terminal_width=WIDTH, max_content_width=WIDTH)


def _anchor(path: list[str]) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    return "-".join(path).lower()
