"""The dashboard's actions in the command palette (ctrl+p), from the same table as its keys."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.screens import DashboardScreen


class DashboardCommands(Provider):
    """Every `DashboardScreen.ACTIONS` entry, searchable by its title."""

    def _entries(self) -> list[tuple[str, str, str]]:
        screen: DashboardScreen = self.screen  # type: ignore[assignment]
        return [(f"{a.title} ({a.key})", a.action, a.help) for a in screen.ACTIONS
                if a.action != "stop_task"]

    async def discover(self) -> Hits:
        screen: DashboardScreen = self.screen  # type: ignore[assignment]
        for title, action, help_text in self._entries():
            yield DiscoveryHit(title, partial(screen.run_named, action), help=help_text)

    async def search(self, query: str) -> Hits:
        screen: DashboardScreen = self.screen  # type: ignore[assignment]
        matcher = self.matcher(query)
        for title, action, help_text in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(screen.run_named, action),
                          help=help_text)
