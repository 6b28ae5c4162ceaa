from __future__ import annotations

import asyncio
from typing import Any

STARTED: list[str] = []
STOPPED: list[str] = []


class Instance:
    def __init__(self, name: str, hang: bool = False) -> None:
        self.name = name
        self.hang = hang

    async def stop(self) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        STOPPED.append(self.name)


def exposures(config: dict[str, Any]) -> list[Any]:
    return []
