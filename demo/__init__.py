"""``ampgate demo``: a living site on loopback, built from the real code paths.

The demo writes a configuration (web console, OCPP with a profile-2 1.6J station and a profile-3 2.0.1
station, a Modbus TCP grid meter, the load manager on a 25 A fuse), checks it with the policy (it must pass
without any accepted risk), starts the gateway in this process and, beside it, simulated peers that speak the
real protocols over 127.0.0.1: two OCPP stations (the ``ocpp`` library over ``websockets`` with TLS) and a
pymodbus SDM630 whose readings follow an accelerated day of house load and PV plus what the cars draw.

It imports no plugin: the gateway loads them from the configuration like ``ampgate run`` does. Modules:
``curve`` (sans-IO: the simulated day and what the meter reads), ``site`` (files, certificates, config),
``stations`` and ``meter`` (the peers), ``main`` (the command).
"""
