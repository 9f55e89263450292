"""The price list the generated world bills by: one per ledger currency, with
one price change (atlas-large gets cheaper) during the incident."""

from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal

from warroom.generate.units import MILLION, iso_us, money_text, q6


class ModelPrice:
    """One row of the price list.

    ``expected`` is the DESIGN §2 formula. Prices have at most 6 decimals, so
    it runs on whole micro-units: the sum is then exact in 1e-12, and rounding
    it half-up to 1e-6 is one integer division, the same number Decimal
    arithmetic gives, several times faster.
    """

    __slots__ = (
        "model",
        "currency",
        "input",
        "cached",
        "output",
        "effective_from",
        "_in",
        "_cached",
        "_out",
    )

    def __init__(
        self,
        model: str,
        currency: str,
        input: Decimal,
        cached: Decimal | None,
        output: Decimal,
        effective_from: int,
    ) -> None:
        self.model = model
        self.currency = currency
        self.input = input
        self.cached = cached  # None: no cache discount (the CSV cell is empty)
        self.output = output
        self.effective_from = effective_from
        self._in = int(input * MILLION)
        self._cached = self._in if cached is None else int(cached * MILLION)
        self._out = int(output * MILLION)
        assert self._in == input * MILLION and self._out == output * MILLION

    def expected(self, inp: int, cached: int, out: int) -> Decimal:
        """The cost of the tokens, rounded half-up to 6 decimals."""
        pico = (inp - cached) * self._in + cached * self._cached + out * self._out
        return Decimal((pico + 500_000) // 1_000_000).scaleb(-6)


_BASE_PRICES = {  # usd per million tokens: input, cached (None: no discount), output
    "atlas-large": ("3.00", "0.30", "15.00"),
    "atlas-mini": ("0.15", "0.075", "0.60"),
    "nova-code": ("1.25", None, "10.00"),
    "orbit-embed": ("0.02", "0.02", "0"),
}
#: the one model whose price changes during the incident
CHANGED_MODEL = "atlas-large"
_CHANGED_PRICES = ("2.50", "0.25", "12.50")
#: one price list per ledger currency; different numbers so a currency mix-up shows
_CURRENCY_FACTOR = {"usd": Decimal(1), "units": Decimal(2), "credits": Decimal("1.5")}


class PriceBook:
    """Every price of every model in every currency, from ``first``; the changed
    model's new price from ``change``."""

    def __init__(self, first: int, change: int) -> None:
        self.prices: list[ModelPrice] = []
        for model, base in sorted(_BASE_PRICES.items()):
            for currency, factor in sorted(_CURRENCY_FACTOR.items()):
                steps = [(first, base)]
                if model == CHANGED_MODEL:
                    steps.append((change, _CHANGED_PRICES))
                for eff, (pin, pcached, pout) in steps:
                    self.prices.append(
                        ModelPrice(
                            model,
                            currency,
                            q6(Decimal(pin) * factor),
                            None if pcached is None else q6(Decimal(pcached) * factor),
                            q6(Decimal(pout) * factor),
                            eff,
                        )
                    )
        self._by: dict[tuple[str, str], tuple[list[int], list[ModelPrice]]] = {}
        for p in self.prices:
            effs, ps = self._by.setdefault((p.model, p.currency), ([], []))
            effs.append(p.effective_from)
            ps.append(p)

    def at(self, model: str, currency: str, ts: int) -> ModelPrice:
        """The price in force at ``ts``."""
        effs, ps = self._by[(model, currency)]
        i = bisect_right(effs, ts) - 1
        if i < 0:
            raise RuntimeError(f"no {currency} price for {model} at {iso_us(ts)}")
        return ps[i]

    def csv_lines(self) -> list[str]:
        """prices.csv, header first, without line ends."""
        lines = ["model,currency,input_per_mtok,cached_per_mtok,output_per_mtok,effective_from"]
        for p in self.prices:
            cached = "" if p.cached is None else money_text(p.cached)
            lines.append(
                f"{p.model},{p.currency},{money_text(p.input)},{cached},"
                f"{money_text(p.output)},{iso_us(p.effective_from)}"
            )
        return lines
