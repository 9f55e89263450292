"""What a generated world is on disk: its data files, the ``_truth/`` folder,
the detectors whose rows the truth holds, and the streams a writer fills."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from warroom.errors import InputError

#: the detectors whose expected rows _truth/findings.jsonl holds, in file order
DETECTORS = (
    "abuse_false_positives",
    "abuse_penalty_charges",
    "balance_chain_breaks",
    "billing_mismatch",
    "consumption_anomalies",
    "coverage_gaps",
    "duplicate_charges",
    "ledger_conflicts",
    "negative_balance_topups",
    "spent_banked_resets",
    "unbilled_requests",
    "wrongful_rejections",
)
DATA_FILES = ("requests.jsonl", "ledger-1.jsonl", "ledger-2.jsonl", "abuse.jsonl", "prices.csv")
TRUTH_DIR = "_truth"
#: the data files written user by user
JSONL_FILES = ("requests.jsonl", "ledger-1.jsonl", "ledger-2.jsonl", "abuse.jsonl")
#: every stream a writer fills: the JSONL files, the impact rows, one per detector
STREAMS = (*JSONL_FILES, "_users", *DETECTORS)


def check_out_dir(out_dir: Path) -> None:
    """Raises InputError unless out_dir is missing, empty, or a previous world."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir():
        foreign = sorted(
            p.name for p in out_dir.iterdir() if p.name not in DATA_FILES and p.name != TRUTH_DIR
        )
        if foreign:
            raise InputError(
                f"{out_dir} is not empty ({', '.join(foreign[:3])}...); "
                "generate into a new or empty directory"
            )


def open_streams(out_dir: Path, truth: Path) -> dict[str, IO[bytes]]:
    """The JSONL files, and hidden per-detector and impact files under truth."""
    files: dict[str, IO[bytes]] = {}
    try:
        for name in JSONL_FILES:
            files[name] = open(out_dir / name, "wb")  # noqa: SIM115
        files["_users"] = open(truth / ".users.tmp", "wb")  # noqa: SIM115
        for d in DETECTORS:
            files[d] = open(truth / f".{d}.tmp", "wb")  # noqa: SIM115
    except OSError as exc:
        for fh in files.values():
            fh.close()
        raise InputError(f"cannot write into {out_dir}: {exc.strerror}") from None
    return files
