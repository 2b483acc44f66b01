"""A ``Progress`` that records its bars, for tests of what long work reports (issue 22)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hydrarec.io.progress import Bar, Progress


class Recording(Progress):
    """A quiet ``Progress`` that keeps, per bar, its total and its count after each advance."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
        self.bars: dict[str, tuple[int | None, list[int]]] = {}

    @contextmanager
    def task(
        self, description: str, total: int | None, unit: str | None = None, delay: float = 0.0
    ) -> Iterator[Bar]:
        with super().task(description, total, unit, delay) as bar:
            counts: list[int] = []
            self.bars[description] = (total, counts)
            advance = bar.advance

            def recorded(values: dict[str, float] | None = None, n: int = 1) -> None:
                advance(values, n)
                counts.append(bar.completed)

            bar.advance = recorded  # type: ignore[method-assign]
            yield bar
