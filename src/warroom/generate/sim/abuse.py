"""The abuse system: throttles, blocks, penalties and flags, each classified
by the pinned rule at the moment it happens (DECISIONS 'Abuse classification'),
and standing until its ``until`` or a later ``clear``."""

from __future__ import annotations

from warroom.generate.rows import AbuseAction
from warroom.generate.sim.state import UserState
from warroom.generate.units import DAY, HOUR, MIN, iso_us


class AbuseSystem(UserState):
    """Planned actions, moved where the rule's verdict is clear-cut, then applied."""

    def classify_now(self, t: int) -> tuple[str, float]:
        """The pinned classification rule at t, from the requests logged so far,
        with how far from the threshold it is (ratio of last hour to 3x busiest)."""
        ts = self.req_ts
        if not ts or ts[0] > t - DAY:
            return "insufficient_history", 0.0
        n = tok = 0
        j = len(ts) - 1
        while j >= 0 and ts[j] >= t - HOUR:
            n += 1
            tok += self.req_tok[j]
            j -= 1
        first_h = -(-(t - HOUR - 7 * DAY) // HOUR)
        last_h = (t - 2 * HOUR) // HOUR
        top_n = top_tok = 0
        for h in range(first_h, last_h + 1):
            b = self.hourly.get(h)
            if b is not None:
                top_n = max(top_n, b[0])
                top_tok = max(top_tok, b[1])
        if n <= 3 * top_n and tok <= 3 * top_tok:
            ratio = max(n / (3 * top_n) if top_n else 0.0, tok / (3 * top_tok) if top_tok else 0.0)
            if not top_n:
                ratio = 1.0  # no baseline at all: fragile, not a clear false positive
            return "false_positive", ratio
        ratio = max(n / (3 * top_n) if top_n else 99.0, tok / (3 * top_tok) if top_tok else 99.0)
        return "warranted", ratio

    def act(self, t: int, a: AbuseAction) -> None:
        """A planned action at t: moved an hour on while the verdict is not
        clear-cut (or not the one planned), else taken and its end scheduled."""
        cls, ratio = self.classify_now(t)
        clear_cut = (
            (cls == "false_positive" and ratio <= 0.67)
            or (cls == "warranted" and ratio >= 1.5)
            or cls == "insufficient_history"
        )
        if (
            a.intent in ("false_positive", "any")
            and not clear_cut
            or a.intent == "false_positive"
            and cls != "false_positive"
        ):
            # move a planned misfire to an hour where the rule's verdict is clear-cut
            self.taken.discard(t)
            if a.tries < 12 and t + HOUR < self.tl.end - 3 * HOUR:
                a.tries += 1
                a.ts = self.claim(t + HOUR)
                self.push(a.ts, 0, "act", a)
            return
        if a.intent not in ("any", cls):
            raise RuntimeError(
                f"generator self-check: {self.uid} {a.action} at {iso_us(t)} meant {a.intent}, "
                f"the rule says {cls}"
            )
        a.cls = cls
        self.actions.append(a)
        if a.action == "flag":
            return
        end = t + a.duration
        if end >= self.tl.end - HOUR:
            end = self.claim(self.tl.end - HOUR - 10 * MIN)
            a.use_until = True
        if a.use_until:
            a.until = end
        else:
            a.clear_at = end = self.claim(end)
        setattr(self, a.action, a)
        self.push(end, 0, "end", a)

    def end(self, ts: int, a: AbuseAction) -> None:
        """The action's until or clear: it stops standing unless a later one replaced it."""
        if getattr(self, a.action) is a:
            setattr(self, a.action, None)
