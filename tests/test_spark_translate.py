"""The Spark translation of the pack (warroom.spark.translate): no JVM, fast.

Every file of the pack and the impact arithmetic must translate; each fix of the
layer is pinned on the smallest SQL that needs it, and each refusal names the
construct and the file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from warroom.pack import builtin_dir, load_pack
from warroom.spark.translate import Untranslatable, to_spark

PACK = builtin_dir()
FILES = sorted(PACK.glob("*.sql")) + sorted((PACK / "shared").glob("*.sql"))
IMPACT = Path(str(resources.files("warroom.impact") / "impact.sql"))


@pytest.mark.parametrize("path", [*FILES, IMPACT], ids=lambda p: p.name)
def test_every_file_of_the_pack_translates(path: Path) -> None:
    spark = to_spark(path.read_text(encoding="utf-8"), name=path.name)
    assert spark.upper().startswith(("WITH", "SELECT"))
    # nothing of DuckDB's spelling is left: parameters are Spark markers, no comments
    assert "$" not in spark
    assert "--" not in spark and "/*" not in spark


def test_the_pack_is_the_whole_pack() -> None:
    """The files above are those load_pack reads (no query escapes the test)."""
    pack = load_pack()
    names = {p.stem for p in FILES}
    assert set(pack.queries) <= names
    assert {s.path.name for s in pack.shared if s.step is None} <= {p.name for p in FILES}
    assert len(FILES) >= 25


def test_ignore_nulls_becomes_sparks_two_argument_form() -> None:
    sql = "SELECT last_value(x IGNORE NULLS) OVER (ORDER BY t) AS a, first_value(y IGNORE NULLS) OVER (ORDER BY t) AS b FROM s"
    spark = to_spark(sql)
    assert "LAST_VALUE(x, TRUE) OVER (ORDER BY t NULLS LAST) AS a" in spark
    assert "FIRST_VALUE(y, TRUE) OVER (ORDER BY t NULLS LAST) AS b" in spark
    assert "IGNORE NULLS" not in spark.upper()


def test_ignore_nulls_elsewhere_is_refused() -> None:
    with pytest.raises(Untranslatable, match="first_value and last_value only"):
        to_spark("SELECT lag(x IGNORE NULLS) OVER (ORDER BY t) FROM s", name="q.sql")


def test_epoch_us_becomes_unix_micros() -> None:
    assert to_spark("SELECT epoch_us(b) - epoch_us(a) AS d FROM s") == (
        "SELECT UNIX_MICROS(b) - UNIX_MICROS(a) AS d FROM s"
    )


def test_named_parameters_become_spark_markers() -> None:
    spark = to_spark("SELECT * FROM s WHERE ($since IS NULL OR ts >= $since) AND a > $tolerance")
    assert spark == ("SELECT * FROM s WHERE (:since IS NULL OR ts >= :since) AND a > :tolerance")


def test_positional_parameters_are_refused() -> None:
    with pytest.raises(Untranslatable, match=r"q\.sql: parameter \$1 must be named"):
        to_spark("SELECT * FROM s WHERE a > $1", name="q.sql")


def test_nulls_order_is_spelled_out() -> None:
    """DuckDB sorts NULLs last ascending, Spark first: the translation says it."""
    spark = to_spark("SELECT a FROM s ORDER BY a, b DESC")
    assert spark == "SELECT a FROM s ORDER BY a NULLS LAST, b DESC"


def test_decimal_casts_keep_their_precision_and_scale() -> None:
    assert to_spark(
        "SELECT CAST(x AS DECIMAL(38, 6)) * CAST(0.000001 AS DECIMAL(7, 6)) FROM s"
    ) == ("SELECT CAST(x AS DECIMAL(38, 6)) * CAST(0.000001 AS DECIMAL(7, 6)) FROM s")


def test_a_range_frame_with_one_unit_translates() -> None:
    spark = to_spark(
        "SELECT sum(a) OVER (PARTITION BY u ORDER BY ts RANGE BETWEEN INTERVAL '7' DAY "
        "PRECEDING AND CURRENT ROW) FROM s"
    )
    assert "RANGE BETWEEN INTERVAL '7' DAY PRECEDING AND CURRENT ROW" in spark


def test_a_range_frame_mixing_units_is_refused() -> None:
    with pytest.raises(Untranslatable, match="same unit on both ends"):
        to_spark(
            "SELECT sum(a) OVER (ORDER BY ts RANGE BETWEEN INTERVAL '7' DAY PRECEDING "
            "AND INTERVAL '1' HOUR FOLLOWING) FROM s",
            name="q.sql",
        )


@pytest.mark.parametrize(
    "call",
    [
        "median(x)",
        "quantile_cont(x, 0.5)",
        "quantile_disc(x, 0.5)",
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY x)",
    ],
)
def test_medians_and_quantiles_are_refused_with_the_way_out(call: str) -> None:
    with pytest.raises(Untranslatable, match=r"q\.sql: .*lower median with row_number"):
        to_spark(f"SELECT u, {call} FROM s GROUP BY u", name="q.sql")


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("SELECT list_filter(xs, lambda x: x > 1) FROM s", "list_filter|Lambda|ArrayFilter"),
        ("SELECT hash(a) FROM s", "hash|MD5|Hash"),
        ("SELECT date_diff('day', a, b) FROM s", "DateDiff|date_diff"),
        ("SELECT ts AT TIME ZONE 'UTC' FROM s", "AtTimeZone"),
        ("SELECT * FROM a ASOF JOIN b ON a.t >= b.t", "ASOF JOIN"),
        ("SELECT * FROM a SEMI JOIN b ON a.t = b.t", "SEMI JOIN"),
        ("SELECT a FROM s WHERE ts > t - INTERVAL '1' MONTH", "INTERVAL 'N'"),
        ("SELECT a FROM s WHERE ts > now() - INTERVAL '1' MONTH", "now"),
    ],
)
def test_constructs_outside_the_portable_list_are_refused(sql: str, what: str) -> None:
    with pytest.raises(Untranslatable, match=rf"q\.sql: .*({what})"):
        to_spark(sql, name="q.sql")


def test_unreadable_sql_is_refused_with_the_file_name() -> None:
    with pytest.raises(Untranslatable, match=r"q\.sql: SQLGlot cannot read it"):
        to_spark("SELECT FROM WHERE (", name="q.sql")
