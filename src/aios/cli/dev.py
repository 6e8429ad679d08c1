"""``aios dev ls``: the device bus of the running kernel (devices, drivers, classes).

A daemon client: the console agent makes DEV_LIST with the operator's authority.
"""

from __future__ import annotations

from typing import Any

import typer

NAME = "dev"
app = typer.Typer(help="Device bus: devices, drivers, health.", no_args_is_help=True)
OutputOpt = typer.Option("table", "-o", "--output", help="table or json")


def device_rows(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in devices:
        caps = d.get("capabilities") or {}
        rows.append({"id": d["id"], "class": d["class"], "driver": f"{d['driver']} {d['version']}",
                     "health": d["health"],
                     "model": caps.get("model", caps.get("name", "")),
                     "slots": caps.get("slots", "")})
    return rows


@app.command("ls")
def ls(device_class: str = typer.Option(None, "--class", help="only this device class"),
       drivers: bool = typer.Option(False, "--drivers", help="list drivers instead"),
       output: str = OutputOpt) -> None:
    """Devices on the bus (or, with --drivers, the drivers it found)."""
    from aios.cli.kernel_cmds import _call, _connect, _emit

    r = _call(_connect(), "DEV_LIST", 2, device_class)
    if output == "json":
        _emit(r["drivers"] if drivers else r["devices"], output)
    elif drivers:
        _emit(r["drivers"], output, ["name", "class", "version", "description"], "drivers")
    else:
        _emit(device_rows(r["devices"]), output,
              ["id", "class", "driver", "health", "model", "slots"], "devices")
