"""``glidein-triton discover``: the Triton-capable slots of an HTCondor pool, as a table or JSON.

Asks the collector for the startd ads with ``HasTriton =?= True`` (published by the startup script) and
shows each slot's site, endpoints, GPUs, Triton version and loaded models (``TritonLoadedModels``, kept up
to date by the periodic script, when present).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

import classad2
import htcondor2

from glidein_triton.worker.word_rules import plain_text

CONSTRAINT = "HasTriton =?= True"
PROJECTION = [
    "Name",
    "Machine",
    "GLIDEIN_Site",
    "HasTriton",
    "TritonGRPCURL",
    "TritonHTTPURL",
    "TritonGPUs",
    "TritonGPUNames",
    "TritonVersion",
    "TritonLoadedModels",
]
#: table column header -> record key
COLUMNS = {
    "SLOT": "name",
    "SITE": "site",
    "GRPC": "grpc_url",
    "HTTP": "http_url",
    "GPUS": "gpus",
    "VERSION": "version",
    "MODELS": "models",
}


def query_slots(pool: str | None = None, constraint: str = CONSTRAINT) -> list[classad2.ClassAd]:
    """The startd ads matching ``constraint`` from the collector of ``pool`` (default: the configured one)."""
    collector = htcondor2.Collector(pool)
    ads: list[classad2.ClassAd] = collector.query(
        htcondor2.AdType.Startd, constraint=constraint, projection=PROJECTION
    )
    return ads


def _value(ad: classad2.ClassAd, name: str) -> Any:
    """The attribute's evaluated value, or None when it is missing, undefined or an error."""
    try:
        value = ad.eval(name)
    except KeyError:
        return None
    return None if isinstance(value, classad2.Value) else value


def models_of(value: Any) -> list[str]:
    """Model names from a list or a comma/space separated string."""
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str):
        return [name for name in re.split(r"[,\s]+", value) if name]
    return []


def slot_record(ad: classad2.ClassAd) -> dict[str, Any]:
    """What discover shows of one slot."""
    gpus = _value(ad, "TritonGPUs")
    return {
        "name": _value(ad, "Name"),
        "machine": _value(ad, "Machine"),
        "site": _value(ad, "GLIDEIN_Site"),
        "grpc_url": _value(ad, "TritonGRPCURL"),
        "http_url": _value(ad, "TritonHTTPURL"),
        "gpus": gpus if isinstance(gpus, int) and not isinstance(gpus, bool) else None,
        "gpu_names": _value(ad, "TritonGPUNames"),
        "version": _value(ad, "TritonVersion"),
        "models": models_of(_value(ad, "TritonLoadedModels")),
    }


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    return ",".join(value) if isinstance(value, list) else str(value)


def table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table, one slot per line, sorted by slot name."""
    rows = [list(COLUMNS)]
    rows += [
        [_cell(record[key]) for key in COLUMNS.values()]
        for record in sorted(records, key=lambda record: str(record["name"]))
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def render(ads: Sequence[classad2.ClassAd], as_json: bool = False) -> str:
    """The slots as a table, or as a JSON list of records."""
    records = [slot_record(ad) for ad in ads]
    if as_json:
        return json.dumps(sorted(records, key=lambda record: str(record["name"])), indent=2)
    return table(records) + f"\n{len(records)} Triton slot(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="glidein-triton discover", description=plain_text(__doc__.split("\n")[0]) if __doc__ else None
    )
    parser.add_argument("--pool", help="collector host[:port] (default: COLLECTOR_HOST of the configuration)")
    parser.add_argument(
        "--constraint", help="an extra ClassAd constraint, e.g. 'TritonGPUs > 0' (ANDed with HasTriton)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    constraint = f"({CONSTRAINT}) && ({args.constraint})" if args.constraint else CONSTRAINT
    try:
        classad2.ExprTree(constraint)
    except classad2.ClassAdException:
        parser.error(f"--constraint {args.constraint!r} is not a ClassAd expression")
    try:
        ads = query_slots(args.pool, constraint)
    except htcondor2.HTCondorException as error:
        where = args.pool or "the configured pool"
        print(f"discover: cannot query {where} for {constraint!r}: {error}", file=sys.stderr)
        return 1
    if not ads and not args.json:
        print(f"no slot with {constraint} in {args.pool or 'the configured pool'}")
        return 0
    print(render(ads, args.json))
    return 0
