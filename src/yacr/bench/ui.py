"""The terminal side of `yacr bench`: rich's progress bars and tables.

Long runs (1500 containers per runtime) need to show they are alive and how
long is left, so every measuring loop runs inside `UI.task`, one bar per loop.
On a non-terminal (CI logs, pytest) rich draws no live bar; each finished
task still prints one line with its duration.
"""

from __future__ import annotations

import contextlib
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


def need_extras() -> None:
    """Fail early, and say what to install, when the bench extra is missing."""
    missing = []
    for mod in ("rich", "matplotlib"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise SystemExit(f"yacr bench needs {' and '.join(missing)}: "
                         "pip install -e '.[bench]' (make setup does it)")


class UI:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(highlight=False)
        if not self.console.is_terminal:
            # logs and CI: rich would assume 80 columns and wrap every table cell
            self.console = Console(highlight=False, width=150)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(),
                                 console=self.console, transient=True)

    def __enter__(self) -> UI:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def print(self, *args: object, **kw: object) -> None:
        self.console.print(*args, **kw)  # type: ignore[arg-type]

    def warn(self, text: str) -> None:
        self.console.print(f"[bold yellow]warning:[/] {text}")

    @contextlib.contextmanager
    def task(self, label: str, total: float | None) -> Iterator[Callable[..., None]]:
        """A progress bar for one loop; yields advance(n=1). total None: a spinner only."""
        tid = self.progress.add_task(label, total=total)
        t0 = time.monotonic()

        def advance(n: float = 1) -> None:
            self.progress.advance(tid, n)

        try:
            yield advance
        finally:
            self.progress.remove_task(tid)
            self.console.print(f"  [green]done[/] {label} ({time.monotonic() - t0:.1f} s)")

    def table(self, title: str, columns: list[str], rows: list[list[str]],
              right: set[int] | None = None, sections: bool = True) -> None:
        from rich.markup import escape
        from rich.table import Table

        t = Table(title=escape(title), title_justify="left", title_style="bold")
        for i, c in enumerate(columns):
            t.add_column(escape(c), justify="right" if right and i in right else "left")
        last = None
        for r in rows:
            # a new metric starts a new section, so a metric's runtimes read as one block
            if sections and last is not None and r[0] and r[0] != last:
                t.add_section()
            last = r[0] or last
            t.add_row(*(escape(c) for c in r))
        self.console.print(t)
