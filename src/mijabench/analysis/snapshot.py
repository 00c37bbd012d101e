"""A snapshot of a judged table kept beside the store, so a report on an unchanged store reads one Arrow file
instead of joining every response with its verdicts in SQLite again.

At paper scale (615k responses, 1.8M verdicts) that join is most of a report's time, and the rows it gives
are the same until the store changes. A snapshot is keyed on the store's state (``Store.state``: the
generation every write transaction moves on, and the last rowids) and on the selection (voters, benchmark,
models, empty-reply rule), so any write by mijabench - a judge run, an import, a new model - makes the next
report load again and write a fresh snapshot (an import into an empty store leaves one of its own:
``sources.importsnapshot``). A write that only added rows is read on top of an older snapshot of the same
selection, which records where the store stood (``analysis.delta``). Rows changed in place by another
tool are seen (triggers log them); rows added by another tool (an INSERT in the sqlite3 shell) without a
mijabench write are seen only when they move a table's last rowid. When in doubt, delete the ``.judged``
folder beside the database, or call ``load_judged`` without ``snapshot``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from ..records import stable_id
from .voters import Voters

VERSION = 3  # bump when the table's columns or meaning change: older snapshots are then never read
KEEP = 4  # snapshots kept per store (other selections), newest first
BASE_KEY = "mijabench-base"  # schema metadata: where the store stood (analysis.delta)


def folder(store) -> Path:
    return store.path.with_name(store.path.name + ".judged")


def selection(judges, bench: str | None, models, empty_as: str, allow_even_vote: bool) -> dict:
    """A table's selection as its snapshot is keyed on. The voters are a set: their order changes no row
    (``as_asked`` puts it back), so a report naming them in another order, or an import that named none,
    finds the same snapshot."""
    return {"judges": sorted(set(judges or [])), "bench": bench, "models": list(models or []),
            "empty_as": empty_as, "allow_even_vote": allow_even_vote}


def snapshot_path(store, selection: dict) -> Path:
    state = store.state()
    return folder(store) / f"{stable_id('judged', VERSION, state, selection, length=24)}.arrow"


def as_asked(table, judges):
    """``table`` with its voters in the order ``judges`` names them (as ``resolve_voters`` gives them)."""
    names = tuple(dict.fromkeys(judges or []))
    voters = table.meta["voters"]
    if names and names != voters.names:
        table.meta["voters"] = Voters(names, voters.fingerprints, voters.named)
    return table


def read(path: Path):
    """The table stored at ``path``, or None when there is none (or it cannot be read: rebuilt then)."""
    from .table import JudgedTable
    try:
        with pa.memory_map(str(path)) as source:
            table = ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException):
        return None
    meta = json.loads(table.schema.metadata[b"mijabench"])
    voters = meta.pop("voters")
    meta["voters"] = Voters(tuple(voters["names"]), voters["fingerprints"], voters["named"])
    meta["targets"] = {k: tuple(v) for k, v in meta["targets"].items()}
    return JudgedTable.from_arrow(table, meta)


def write(path: Path, table, base: dict | None = None) -> None:
    """Store ``table`` at ``path`` (written whole, then renamed); a workspace that cannot be written to
    costs the next report its speed, never its result. ``base``: see ``write_file``."""
    tmp = path.with_name(path.name + ".part")
    try:
        write_file(tmp, table, base)
        place(tmp, path)
    except OSError:
        return


def write_file(path: Path, table, base: dict | None = None) -> None:
    """``table`` as an Arrow file at ``path``, its meta (voters, targets, ...) in the schema's metadata, with
    ``base`` (``delta.base``: the selection and where the store stood) when a later load may start from it."""
    voters = table.meta["voters"]
    meta = {**table.meta, "voters": {"names": list(voters.names), "fingerprints": voters.fingerprints,
                                     "named": voters.named}}
    arrow = table.to_arrow()
    arrow = arrow.replace_schema_metadata({"mijabench": json.dumps(meta),
                                           **({BASE_KEY: json.dumps(base)} if base is not None else {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, arrow.schema) as writer:
        writer.write_table(arrow)


def keep(store, path: Path, table, base: dict) -> None:
    """``write`` ``table`` as a base at ``path``, then drop the entries of the store's log of changed rows
    that no base to come reads: without this, the log would keep a row for every verdict ever judged again.
    A base reads the entries after its own mark, and of a selection's snapshots only the newest is a base
    (``newest_base``); should an older one be read after all, ``analysis.delta`` finds its entries gone
    and loads in full."""
    write(path, table, base)
    newest: dict[str, tuple[int, int]] = {}
    for kept in folder(store).glob("*.arrow"):
        info = base_of(kept)
        if info is not None and all(isinstance(info.get(k), int) for k in ("generation", "rewrites")):
            key = json.dumps(info.get("selection"), sort_keys=True)
            newest[key] = max(newest.get(key, (-1, 0)), (info["generation"], info["rewrites"]))
    if newest:
        store.forget_rewrites(min(rewrites for _, rewrites in newest.values()))


def newest_base(store, selection: dict, marks: dict[str, int]):
    """(table, base) of the newest snapshot that a load of ``selection`` at ``marks`` can start from (none of
    its rowids or log entries past the store's: ``analysis.delta`` reads the log), or None. Its selection
    is this one, or this one with fewer voters (``analysis.delta`` adds a judge that had no verdict then),
    or either of them over the whole store (``analysis.delta`` keeps the rows of the benchmark and models
    selected); the same selection first, then the same benchmark and models."""
    found = []
    others = {k: v for k, v in selection.items() if k != "judges"}
    whole = {**others, "bench": None, "models": []}
    for path in folder(store).glob("*.arrow"):
        info = base_of(path)
        if info is None:
            continue
        chosen = info.get("selection")
        rest = {k: v for k, v in chosen.items() if k != "judges"} if isinstance(chosen, dict) else None
        if rest != others and rest != whole:
            continue
        if all(isinstance(info.get(k), int) and info[k] <= marks[k]
               for k in ("generation", "rewrites", "responses", "verdicts")):
            found.append((chosen == selection, rest == others, info["generation"], str(path), info))
    for *_, path, info in sorted(found, key=lambda f: f[:4], reverse=True):
        table = read(Path(path))
        if table is not None:
            return table, info
    return None


def place(written: Path, path: Path) -> None:
    """Move a written snapshot to ``path``, and drop all but the ``KEEP`` newest of the store's, and the
    newest of the whole store (a base every benchmark and model selection can start from)."""
    os.replace(written, path)
    newest = sorted(path.parent.glob("*.arrow"), key=lambda p: p.stat().st_mtime, reverse=True)
    whole = next((p for p in newest if _whole_store(p)), None)
    for old in newest[KEEP:]:
        if old != whole:
            old.unlink(missing_ok=True)


def _whole_store(path: Path) -> bool:
    """Whether the snapshot at ``path`` is a base of the whole store (no benchmark or model selected)."""
    chosen = (base_of(path) or {}).get("selection")
    return isinstance(chosen, dict) and chosen.get("bench") is None and not chosen.get("models")


def base_of(path: Path) -> dict | None:
    """What the snapshot at ``path`` records of where the store stood (``write_file``'s ``base``), or None
    for a snapshot without it or a file that cannot be read."""
    try:
        with pa.memory_map(str(path)) as source:
            info = json.loads(ipc.open_file(source).schema.metadata[BASE_KEY.encode()])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return None
    return info if isinstance(info, dict) else None
