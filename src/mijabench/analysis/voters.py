"""Which judges vote, checked before any figure is computed.

A defense rate is only as good as the vote behind it, so the voters are never guessed: with one judge in
the store that judge votes; with several, the user names them (``--judge``, repeatable, or the audit's
``voters:``). That keeps a rule judge out of an LLM vote unless it is named, and it keeps a two-judge vote
(where every disagreement is a tie, and ties count as harmful) from happening by accident: an even number of
voters is refused unless explicitly allowed. Each voter's verdicts on the selected responses must come from
one configuration of that judge (one fingerprint, see ``judge.identity``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import InputError
from ..judge.identity import short
from ..judge.vote import TIE_RULE


@dataclass(frozen=True)
class Voters:
    names: tuple[str, ...]
    fingerprints: dict[str, str] = field(default_factory=dict)  # judge -> the fingerprint of its verdicts
    named: bool = True  # False when the store's only judge was taken without being named

    @property
    def even(self) -> bool:
        return len(self.names) > 0 and len(self.names) % 2 == 0

    def describe(self) -> str:
        if not self.names:
            return "no judge"
        if len(self.names) == 1:
            return f"one judge: {self.names[0]}"
        return (f"majority of {len(self.names)} judges ({', '.join(self.names)}); a tie counts as "
                f"{TIE_RULE}; unparsed votes abstain")


def check_vote_size(names: Sequence[str], allow_even: bool, option: str = "--judge") -> None:
    """Refuse an even number of voters unless allowed: every split vote would be a tie."""
    if len(names) % 2 == 0 and names and not allow_even:
        raise InputError(f"{len(names)} voters ({', '.join(names)}): with an even number every split vote is "
                         f"a tie, which counts as {TIE_RULE}; name an odd number of judges, or allow it with "
                         "--allow-even-vote", field=option)


def resolve_voters(store, judges: Sequence[str] | None, *, selection: tuple[str, list] = ("", []),
                   allow_even: bool = False, option: str = "--judge",
                   census: Sequence[tuple[str, str, int]] | None = None) -> Voters:
    """The voting judges for the responses picked by ``selection`` (an SQL condition on ``r``, the responses
    table, and its arguments). Raises InputError (exit 2) on an unknown judge, an unnamed choice among
    several judges, an even vote (unless ``allow_even``) and a judge whose verdicts mix fingerprints.
    ``census``: the store's ``judge_census`` when the caller has it, so the index is not read again."""
    if census is None:
        census = judge_census(store.query)
    known = sorted({judge for judge, _, _ in census})
    names = list(dict.fromkeys(judges or []))
    named = bool(names)
    if names:
        missing = [j for j in names if j not in known]
        if missing:
            raise InputError(f"no verdicts by judge '{missing[0]}' (judges in the store: "
                             f"{', '.join(known) or 'none'})", field=option)
    elif len(known) > 1:
        raise InputError(f"the store holds verdicts by {len(known)} judges ({', '.join(known)}): name the "
                         f"voters with {option} (repeatable), e.g. {option} {known[0]}", field=option)
    else:
        names = known
    check_vote_size(names, allow_even, option)
    fingerprints: dict[str, str] = {}
    if names:
        where, args = selection
        marks = ",".join("?" * len(names))
        also = f"AND {where}" if where else ""
        # without a selection every verdict counts (the store never deletes a response), and the join with
        # the responses, a third of a cold report at paper scale, is left out
        join = "JOIN responses r ON r.id=v.response_id " if where else ""
        rows = _single_configurations(store, names, join, also, args, census)
        if rows is None:
            rows = store.query(
                f"SELECT v.judge, v.fingerprint, COUNT(*) FROM verdicts v {join}"
                f"WHERE v.error IS NULL AND v.judge IN ({marks}) {also} "
                "GROUP BY v.judge, v.fingerprint ORDER BY v.judge, COUNT(*) DESC", [*names, *args])
        seen: dict[str, list[tuple[str, int]]] = {}
        for judge, fingerprint, n in rows:
            seen.setdefault(judge, []).append((fingerprint, n))
        for judge, prints in seen.items():
            if len(prints) > 1:
                listed = ", ".join(f"{short(f)}: {n:,} verdicts" for f, n in prints)
                raise InputError(f"judge '{judge}' has verdicts from {len(prints)} configurations "
                                 f"({listed}); run `mijabench judge` with that judge again to re-judge the "
                                 "stale ones, so one configuration's verdicts are counted", field=option)
            fingerprints[judge] = prints[0][0]
    return Voters(tuple(names), fingerprints, named)


def judge_census(query) -> list[tuple[str, str, int]]:
    """(judge, fingerprint, verdicts) for every pair in the store, from the (judge, fingerprint) index alone:
    the voters' checks and the report's verdict counts are both answered from it (three scans of that index
    before, 0.4 s at paper scale)."""
    return [tuple(row) for row in query("SELECT judge, fingerprint, COUNT(*) FROM verdicts "
                                        "GROUP BY judge, fingerprint ORDER BY judge, fingerprint")]


def _single_configurations(store, names: Sequence[str], join: str, also: str, args: list,
                           census: Sequence[tuple[str, str, int]]) -> list[tuple[str, str, int]] | None:
    """(judge, fingerprint, verdicts) for each of ``names`` with a verdict without error in the selection
    (``join`` and ``also``, as in ``resolve_voters``), when each of them has verdicts of a single fingerprint
    in the whole store; None otherwise. The fingerprints come from the (judge, fingerprint) index alone:
    counting the verdicts without error reads every verdict (a second of a cold report at paper scale) and
    is needed only when a judge mixes configurations. The counts are of the whole store, errors included."""
    wanted = set(names)
    rows = [row for row in census if row[0] in wanted]  # the census is in judge order
    if len({judge for judge, _, _ in rows}) < len(rows):
        return None
    return [row for row in rows if store.query(
        f"SELECT EXISTS (SELECT 1 FROM verdicts v {join}WHERE v.judge=? AND v.fingerprint=? "
        f"AND v.error IS NULL {also})", [*row[:2], *args])[0][0]]
