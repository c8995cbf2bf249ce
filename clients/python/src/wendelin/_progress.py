"""Optional progress bars (tqdm, when installed) for long transfers."""

from __future__ import annotations

from typing import Any


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, total: int | None, desc: str) -> Any:
    """A tqdm bar counting bytes when ``enabled`` and tqdm is installed, else a no-op."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)
