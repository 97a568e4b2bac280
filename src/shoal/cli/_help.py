"""Help that names what an argument takes by its metavar alone: `PROJECT`, as the usage line of
`cp SOURCE DEST` does, not Typer's `{PROJECT}` on the usage line and `PROJECT <path>` beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperArgument, TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import Context  # Typer's own copy of click, which its classes are built on


class PlainArgument(TyperArgument):
    """An argument shown as its metavar, written as it should read (`JOB...` for many)."""

    def get_usage_pieces(self, ctx: Context) -> list[str]:
        return [self.metavar] if self.metavar else super().get_usage_pieces(ctx)

    def display_type_rich(self, ctx: Context) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)


class Group(TyperGroup):
    """The `shoal` group: every argument of every command below it is a PlainArgument."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        plain_arguments(self)


def plain_arguments(command: TyperCommand | TyperGroup) -> None:
    for param in command.params:
        if type(param) is TyperArgument:
            param.__class__ = PlainArgument  # same fields, other rendering: Typer takes no class per argument
    for sub in getattr(command, "commands", {}).values():
        plain_arguments(sub)
