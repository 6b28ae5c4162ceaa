"""The simulated meters: a pymodbus TCP server on 127.0.0.1 with two Eastron SDM630s behind one address, as
on an RS-485-to-TCP gateway: unit 1 the grid meter, unit 2 the meter on the PV inverter's output.

Register addresses are written out here from Eastron's "SDM630 Modbus Protocol" V1.8 (input registers,
0-based, float32 high word first), not taken from the Modbus plugin's map, so the demo exercises the plugin
the way a real meter would. Every ``UPDATE_S`` the whole image is rewritten in one call (a poll never sees half
an update) from ``curve.reading`` and the cars' draw, and the energy registers integrate the power.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from demo import curve

UNIT_ID = 1
PV_UNIT_ID = 2
UPDATE_S = 1.0
INPUT_REGISTERS = 4  # function code 4: read input registers
FIRST, LAST = 0x0000, 0x004F  # the SDM630's map answers everywhere in this range
VOLTAGE = (0x0000, 0x0002, 0x0004)
CURRENT = (0x0006, 0x0008, 0x000A)
POWER = (0x000C, 0x000E, 0x0010)
TOTAL_POWER = 0x0034
FREQUENCY = 0x0046
IMPORT_KWH = 0x0048
EXPORT_KWH = 0x004A


def _float(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")]


def image(reading: curve.Reading, import_kwh: float, export_kwh: float) -> list[int]:
    """The registers FIRST..LAST for one reading."""
    regs = [0] * (LAST - FIRST + 1)

    def put(address: int, value: float) -> None:
        regs[address - FIRST:address - FIRST + 2] = _float(value)

    for i in range(3):
        put(VOLTAGE[i], reading.voltage[i])
        put(CURRENT[i], reading.current[i])
        put(POWER[i], reading.power[i])
    put(TOTAL_POWER, reading.total_w)
    put(FREQUENCY, 50.0)
    put(IMPORT_KWH, import_kwh)
    put(EXPORT_KWH, export_kwh)
    return regs


class GridMeter:
    """The SDM630s on ``127.0.0.1:port``; ``cars_a()`` says what the simulated cars draw per phase now."""

    def __init__(self, port: int, cars_a: Callable[[], tuple[float, float, float]]) -> None:
        self.port = port
        self.cars_a = cars_a
        self.started = time.monotonic()
        self.import_kwh, self.export_kwh = 18250.0, 6120.0
        self.pv_kwh = 9480.0
        self.last: curve.Reading | None = None
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None

    def now(self) -> curve.Reading:
        return curve.reading(curve.sim_hour(time.monotonic() - self.started), self.cars_a())

    def pv_now(self) -> curve.Reading:
        return curve.pv_reading(curve.sim_hour(time.monotonic() - self.started))

    async def start(self) -> None:
        def device(unit_id: int, regs: list[int]) -> SimDevice:
            registers = SimData(address=FIRST, values=regs, datatype=DataType.REGISTERS)
            bits = [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)]
            holding = [SimData(address=60000, values=[0], datatype=DataType.REGISTERS)]
            return SimDevice(id=unit_id, simdata=(bits, list(bits), holding, [registers]))

        devices = [device(UNIT_ID, image(self.now(), self.import_kwh, self.export_kwh)),
                   device(PV_UNIT_ID, image(self.pv_now(), self.pv_kwh, 0.0))]
        self._server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
        await self._server.serve_forever(background=True)
        self._task = asyncio.create_task(self._update())

    async def _update(self) -> None:
        assert self._server is not None
        while True:
            await asyncio.sleep(UPDATE_S)
            reading = self.now()
            # Energy integrates in simulated time, so the registers move as fast as the day does.
            kwh = reading.total_w * UPDATE_S * curve.SPEEDUP / 3_600_000
            if kwh >= 0:
                self.import_kwh += kwh
            else:
                self.export_kwh -= kwh
            pv = self.pv_now()
            self.pv_kwh += pv.total_w * UPDATE_S * curve.SPEEDUP / 3_600_000
            self.last = reading
            await self._server.async_setValues(UNIT_ID, INPUT_REGISTERS, FIRST,
                                               image(reading, self.import_kwh, self.export_kwh))
            await self._server.async_setValues(PV_UNIT_ID, INPUT_REGISTERS, FIRST, image(pv, self.pv_kwh, 0.0))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
