"""The last step of a world: prices.csv, and ``_truth/`` assembled from the
per-detector streams and the totals (findings.jsonl, users.jsonl,
rejects.jsonl, summary.json). What needs the whole world is decided here:
coverage gaps, and which unbilled requests fall where both logs have rows."""

from __future__ import annotations

import shutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from warroom.generate.units import HOUR, iso_us, money_text, us_since_epoch
from warroom.generate.users import WorldConfig
from warroom.generate.write.files import DETECTORS, TRUTH_DIR
from warroom.generate.write.sink import Sink
from warroom.generate.write.stats import TruthStats


def finish(out: Path, cfg: WorldConfig, total: Sink, rate: float) -> dict[str, int]:
    """prices.csv, and _truth/ from the per-detector streams and the totals;
    returns the rows of each data file."""
    stats = total.stats
    truth = out / TRUTH_DIR
    lines = cfg.prices.csv_lines()
    (out / "prices.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows: dict[str, int] = {**total.rows, "prices.csv": len(lines) - 1}

    # unbilled requests count only inside the time both sources cover
    cover = None
    if (
        stats.req_lo is not None
        and stats.req_hi is not None
        and stats.led_lo is not None
        and stats.led_hi is not None
    ):
        cover = (max(stats.req_lo, stats.led_lo), min(stats.req_hi, stats.led_hi))
    with open(truth / "findings.jsonl", "wb") as out_fh:
        for d in DETECTORS:
            tmp = truth / f".{d}.tmp"
            with open(tmp, "rb") as fh:
                if d == "coverage_gaps":
                    _write_coverage_gaps(out_fh, stats)
                elif d != "unbilled_requests":
                    shutil.copyfileobj(fh, out_fh, 1 << 20)
                else:
                    _write_unbilled_covered(fh, out_fh, stats, cover)
            tmp.unlink()
    (truth / ".users.tmp").replace(truth / "users.jsonl")
    (truth / "rejects.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in total.rejects))
    summary = _summary(cfg, total, rows, cover, rate)
    if total.brackets is not None:  # a world of the report scenario (older ones keep their bytes)
        tl = cfg.timeline
        summary["report_scenario"] = {
            "duplicate_pause": None if tl.dup_pause is None else _span(tl.dup_pause),
            "spared_plans": sorted(cfg.spared),
            "episodes": total.brackets.truth(),
        }
    (truth / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return rows


def _write_coverage_gaps(out_fh: IO[bytes], stats: TruthStats) -> None:
    d = "coverage_gaps"
    for h, detail in _coverage_gaps(stats):
        out_fh.write(
            orjson.dumps(
                {
                    "detector": d,
                    "user_id": None,
                    "currency": None,
                    "ts": iso_us(h * HOUR),
                    "request_id": None,
                    "entry_id": None,
                    "amount": None,
                    "detail": detail,
                }
            )
            + b"\n"
        )
        stats.finding(d, h * HOUR, detail)


def _write_unbilled_covered(
    fh: IO[bytes], out_fh: IO[bytes], stats: TruthStats, cover: tuple[int, int] | None
) -> None:
    """The unbilled requests inside the cover, and not in an hour where the
    ledger has no rows at all."""
    d = "unbilled_requests"
    stats.forget(d)
    for line in fh:
        row = orjson.loads(line)
        ts = us_since_epoch(datetime.fromisoformat(row["ts"]))
        if cover is not None and cover[0] <= ts <= cover[1] and ts // HOUR in stats.led_hours:
            out_fh.write(line)
            stats.finding(d, ts, row["detail"])


def _coverage_gaps(stats: TruthStats) -> list[tuple[int, str]]:
    """Clock hours inside the span both logs cover (from the later first hour to
    the earlier last) where one has rows and the other none, with the detail."""
    req, led = stats.req_hours, stats.led_hours
    if not req or not led:
        return []
    gaps = []
    for h in range(max(min(req), min(led)), min(max(req), max(led)) + 1):
        if h in req and h not in led:
            gaps.append((h, f"ledger: none; requests: {req[h]} rows"))
        elif h in led and h not in req:
            gaps.append((h, f"requests: none; ledger: {led[h]} rows"))
    return gaps


def _span(w: tuple[int, int]) -> dict[str, str]:
    return {"from": iso_us(w[0]), "until": iso_us(w[1])}


def _summary(
    cfg: WorldConfig,
    total: Sink,
    rows: dict[str, int],
    cover: tuple[int, int] | None,
    rate: float,
) -> dict[str, Any]:
    """summary.json: the parameters, the injected incidents, and per detector
    its rows, first and last, per detail and per hour; impact totals."""
    tl = cfg.timeline
    stats = total.stats
    return {
        "generator": "warroom.generate",
        "parameters": {
            "users": cfg.users,
            "days": tl.days,
            "seed": cfg.seed,
            "start": iso_us(tl.start),
            "requests_per_user_day": rate,
        },
        "period": {"start": iso_us(tl.start), "end": iso_us(tl.end)},
        "files": rows,
        "malformed_lines": len(total.rejects),
        "ledger_split": {
            "at": iso_us(tl.split),
            "overlap_from": iso_us(tl.split - HOUR),
            "overlap_until": iso_us(tl.split + HOUR),
        },
        "coverage": None
        if cover is None
        else {"from": iso_us(cover[0]), "until": iso_us(cover[1])},
        "injected": {
            "duplicate_deductions": _span(tl.dup),
            "duplicate_refunds_from": None if tl.refund_at is None else iso_us(tl.refund_at),
            "charged_failed_requests": _span(tl.failed),
            "price_change": iso_us(tl.price_change),
            "stale_price_billing": _span(tl.stale),
            "billing_outage": None if tl.outage is None else _span(tl.outage),
            "abuse_misfires": None if tl.abuse is None else _span(tl.abuse),
            "global_quota_reset": None if tl.global_reset is None else iso_us(tl.global_reset),
            "ledger_conflicts": total.conflicts,
        },
        "roles": dict(sorted(stats.roles.items())),
        "plans": dict(sorted(stats.plans.items())),
        "detectors": {
            d: {
                "rows": stats.count[d],
                "first": iso_us(stats.first[d]) if d in stats.first else None,
                "last": iso_us(stats.last[d]) if d in stats.last else None,
                "by_detail": dict(sorted(stats.detail[d].items())),
                "hourly": {iso_us(h * HOUR): n for h, n in sorted(stats.hourly[d].items())},
            }
            for d in DETECTORS
        },
        "totals": {
            cur: {k: money_text(v) if isinstance(v, Decimal) else v for k, v in t.items()}
            for cur, t in sorted(stats.totals.items())
        },
    }
