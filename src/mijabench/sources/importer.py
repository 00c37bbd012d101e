"""`mijabench import`, the library side: a judged corpus (hub, Parquet/JSONL/CSV file, or a store export
folder) into the workspace store as items, responses and verdicts.

    result = import_corpus(store, "mijabench_align.parquet", bench="paper")

Everything is read and checked before the first write. The import's run id is a hash of the source's
content, and every record has a content id, so importing the same source again adds nothing, and an import
that was interrupted is finished by running it again.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MijaError
from ..integrations.inspect.logfiles import is_inspect_source
from ..paths import sha256_file
from ..records import stable_id
from ..store import Store
from .corpus import IMPORT_SETTINGS, Corpus, read_corpus
from .corpuscols import parse_overrides
from .importsnapshot import ImportSnapshot, empty_store
from .storeexport import EXPORT_TABLES, StoreExport, is_store_export, read_store_export
from .tables import open_table, rows_of

BATCH = 5000
BULK_ROWS = 50_000  # below this, row-by-row index inserts are cheap enough
# rows to a transaction in a bulk write: each commit writes every index page the batch touched (random ids
# touch most of them), so at paper scale 5,000-row batches spent more time committing than inserting
BULK_BATCH = 100_000
_COUNTED = ("items", "bench_items", "responses", "verdicts", "models", "runs", "seeds", "scenarios")


@dataclass
class ImportResult:
    source: str
    layout: str
    run_id: str
    read: dict[str, int]  # records in the source
    added: dict[str, int]  # rows the store gained
    notes: list[str] = field(default_factory=list)


@dataclass
class PreparedImport:
    """A source read and checked in full, not yet written: ``corpus`` for a table, ``export`` for a store
    export."""

    name: str
    digest: str
    run_id: str
    bench: str | None
    config: dict[str, Any]
    corpus: Corpus | None = None
    export: StoreExport | None = None


def import_corpus(store: Store, source: str | Path, **options: Any) -> ImportResult:
    """Import ``source``: a hub repo (``hub=True``), a store export folder, or a table file. Options are
    those of ``prepare_import``."""
    return write_import(store, prepare_import(source, **options))


def prepare_import(source: str | Path, *, hub: bool = False, split: str = "train", config: str | None = None,
                   from_disk: str | Path | None = None, bench: str | None = None,
                   columns: list[str] | None = None, language: str | None = None, judge_prefix: str = "",
                   default_judge: str = "imported") -> PreparedImport:
    """Read and check everything; raises InputError/MijaError before any store is touched."""
    path = Path(source)
    if not hub and not is_store_export(path) and is_inspect_source(path):
        if from_disk is not None:
            raise MijaError("--from-disk goes with --hub")
        return _prepare_inspect(path, bench, parse_overrides(columns), language, judge_prefix)
    if not hub and is_store_export(path):
        if columns or language or judge_prefix:
            raise MijaError("--columns, --language and --judge-prefix do not apply to a store export")
        data = read_store_export(path)
        digest = hashlib.sha256()
        for table in EXPORT_TABLES:
            for suffix in ("parquet", "jsonl"):
                if (path / f"{table}.{suffix}").is_file():
                    digest.update(sha256_file(path / f"{table}.{suffix}").encode())
        run_id = f"import-{stable_id('export', digest.hexdigest(), length=12)}"
        return PreparedImport(str(path), digest.hexdigest(), run_id, bench, {
            "source": str(path), "content": digest.hexdigest(), "layout": "store-export", "bench": bench},
            export=data)
    overrides = parse_overrides(columns)
    if hub:
        from .hub import open_dataset  # `datasets` is imported only for hub sources
        data = open_dataset(str(source), config, split, from_disk=from_disk, offline_hint=(
            "or pass a local copy of the corpus (Parquet/JSONL/CSV) as the source"))
        name = f"hf:{source}"
        digest = str(getattr(data, "_fingerprint", "") or stable_id(str(source), config, split))
        table = rows_of(data, f"{source}[{split}]")
    else:
        if from_disk is not None:
            raise MijaError("--from-disk goes with --hub")
        table = open_table(path)
        name, digest = f"file:{path.name}", sha256_file(path)
    run_id = f"import-{stable_id(name, digest, length=12)}"
    with collector_paused():
        corpus = read_corpus(table, source=name, overrides=overrides, language=language,
                             judge_prefix=judge_prefix, default_judge=default_judge, run_id=run_id)
    del table
    release_read_memory()
    bench = bench or _default_bench(str(source))
    record = {"source": name, "content": digest, "layout": corpus.layout, "bench": bench,
              "columns": overrides, "language": language, "judge_prefix": judge_prefix,
              "models": corpus.models, "judges": corpus.judges}
    return PreparedImport(name, digest, run_id, bench, record, corpus=corpus)


def _prepare_inspect(path: Path, bench: str | None, overrides: dict[str, str], language: str | None,
                     judge_prefix: str) -> PreparedImport:
    """Inspect logs (the ``inspect`` extra reads them): items, responses and verdicts, as a corpus."""
    try:
        from ..integrations.inspect import logs
    except ImportError:
        raise MijaError(f"{path}: .eval/.json files and folders of them are read as Inspect logs, which "
                        "needs inspect-ai: pip install 'mijabench[inspect]'") \
            from None
    paths = logs.log_paths(path)
    name, digest = f"inspect:{path.name}", logs.digest_of(paths)
    run_id = logs.run_id_of(name, digest)
    corpus, records = logs.read_logs(paths, source=name, overrides=overrides, language=language,
                                     judge_prefix=judge_prefix, run_id=run_id)
    benches = {i.provenance.get("bench") for i in corpus.items.values()}
    if not bench:  # the benchmark the task ran, when all samples name the same one
        bench = benches.pop() if len(benches) == 1 and None not in benches else _default_bench(str(path))
    record = {"source": name, "content": digest, "layout": "inspect", "bench": bench, "columns": overrides,
              "language": language, "judge_prefix": judge_prefix, "logs": records, "models": corpus.models,
              "judges": corpus.judges}
    return PreparedImport(name, digest, run_id, bench, record, corpus=corpus)


def write_import(store: Store, prepared: PreparedImport) -> ImportResult:
    if prepared.export is not None:
        return _import_export(store, prepared)
    corpus = prepared.corpus
    assert corpus is not None and prepared.bench is not None
    _check_judges(store, corpus.fingerprints())
    before = _counts(store)
    # into an empty store, the first report's table is made from the corpus while the verdicts are written
    first_table = ImportSnapshot(store, corpus, prepared.run_id) if empty_store(store) else None
    store.put_run(prepared.run_id, "import", prepared.config)
    known = {m["name"] for m in store.models()}
    for model in corpus.models:  # before the responses: the table made meanwhile names their families
        if model not in known:  # a model the store knows keeps its own spec, family and size
            store.put_model(model, f"imported:{prepared.name}",
                            meta=corpus.model_meta.get(model) or {"imported_from": prepared.name})
    with collector_paused():
        _write(store, prepared.bench, corpus, prepared.run_id, first_table)
    if first_table is not None:
        first_table.finish()  # after the last write: the snapshot is filed under the store's final state
    read = {"rows": corpus.rows, "items": len(corpus.items), "responses": corpus.response_count,
            "verdicts": corpus.verdict_count}
    return ImportResult(prepared.name, corpus.layout, prepared.run_id, read, _added(before, _counts(store)),
                        _notes(corpus))


def release_read_memory() -> None:
    """Hand back what reading a corpus freed before the writing starts: Arrow's pool keeps the pages of the
    table it read, and the C heap the freed blocks of the reading's interim arrays. At paper scale that was
    370 of the 910 MB held after reading, which the writing's page cache then came on top of."""
    import sys

    from ..backends.heap import release_freed_memory

    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    release_freed_memory()


@contextlib.contextmanager
def collector_paused():
    """Python's cycle collector off while a corpus is read or written. A corpus holds millions of values
    in a few lists, and each full collection (one per some tens of thousands of new tuples and dicts) walks
    them all: at paper scale that made writing the 43k items take 2 to 3 s instead of about 1. Reading and
    writing make no reference cycles to collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write(store: Store, bench: str, corpus: Corpus, run_id: str,
           first_table: ImportSnapshot | None = None) -> None:
    items = list(corpus.items.values())
    for start in range(0, len(items), BATCH):
        store.put_items(items[start:start + BATCH], bench=bench)
    # into an empty table nothing can be stored already (the corpus holds each id once): no lookups
    fresh = {t: not store.query(f"SELECT 1 FROM {t} LIMIT 1") for t in ("responses", "verdicts")}
    large = _large(store, corpus.response_count, corpus.verdict_count)
    size = {t: BULK_BATCH if t in large else BATCH for t in ("responses", "verdicts")}
    with store.bulk(large) if large else contextlib.nullcontext():
        if corpus.response_columns is not None and corpus.verdict_columns is not None:
            _put_new_columns(store, "responses", corpus.response_columns, lambda c: store.put_answer_columns(
                c["id"], c["item_id"], c["model"], c["text"], IMPORT_SETTINGS, run_id),
                not fresh["responses"], size["responses"])
            if first_table is not None:
                first_table.start()
            _put_new_columns(store, "verdicts", corpus.verdict_columns, lambda c: store.put_verdict_columns(
                c["id"], c["response_id"], c["judge"], c["label"], c["raw"], c["reasoning"], c["fingerprint"],
                run_id), not fresh["verdicts"], size["verdicts"])
            return
        by_id = operator.attrgetter("id")  # the order the column reader writes in (corpuscolumns.id_order)
        _put_new(store, "responses", list(corpus.responses.values()), store.put_responses,
                 check=not fresh["responses"], size=size["responses"])
        _put_new(store, "verdicts", sorted(corpus.verdicts, key=by_id), store.put_verdicts,
                 check=not fresh["verdicts"], size=size["verdicts"])


def _large(store: Store, responses: int, verdicts: int) -> list[str]:
    """The tables for ``Store.bulk``: those the import more than doubles, when large. Building their indexes
    again then costs less than inserting into them row by row (at paper scale it halves the writing time)."""
    stored = store.query("SELECT (SELECT MAX(rowid) FROM responses), (SELECT MAX(rowid) FROM verdicts)")[0]
    return [t for t, new, old in (("responses", responses, stored[0]), ("verdicts", verdicts, stored[1]))
            if new >= BULK_ROWS and new > (old or 0)]


def _stored(store: Store, table: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` the table holds, asked in chunks that stay under SQLite's limit on parameters."""
    found: set[str] = set()
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in store.query(f"SELECT id FROM {table} WHERE id IN ({marks})", chunk))
    return found


def _put_new(store: Store, table: str, records: list, put, check: bool = True, size: int = BATCH) -> None:
    """Write the records the store lacks, ``size`` to a transaction. Stored ones are left alone: the store
    would otherwise count a stored failure as one more attempt and restamp it, and a second import must
    change nothing."""
    for start in range(0, len(records), size):
        batch = records[start:start + size]
        if check:
            stored = _stored(store, table, [r.id for r in batch])
            batch = [r for r in batch if r.id not in stored]
        if batch:
            put(batch)


def _put_new_columns(store: Store, table: str, columns: dict[str, list], put, check: bool, size: int) -> None:
    """``_put_new`` for records given as columns."""
    ids = columns["id"]
    for start in range(0, len(ids), size):
        batch = {k: v[start:start + size] for k, v in columns.items()}
        if check:
            stored = _stored(store, table, batch["id"])
            keep = [i for i, record_id in enumerate(batch["id"]) if record_id not in stored]
            if len(keep) < len(batch["id"]):
                batch = {k: [v[i] for i in keep] for k, v in batch.items()}
        if batch["id"]:
            put(batch)


def _import_export(store: Store, prepared: PreparedImport) -> ImportResult:
    data, bench, run_id = prepared.export, prepared.bench, prepared.run_id
    assert data is not None
    _check_judges(store, _fingerprints(data.verdicts))
    before = _counts(store)
    store.put_run(run_id, "import", prepared.config)
    for run in data.runs:
        store.put_run(run["id"], run["kind"], run["config"], run["created_at"])
    store.put_seeds(data.seeds)
    store.put_scenarios(data.scenarios)
    memberships: dict[str, list[str]] = {}
    for b, item_id in data.bench_items:
        memberships.setdefault(b, []).append(item_id)
    by_id = {i.id: i for i in data.items}
    if bench:
        memberships = {bench: list(by_id)}
    orphans = set(by_id) - {i for ids in memberships.values() for i in ids}
    if orphans:  # items of no benchmark (rare): the store keeps items only through a benchmark
        memberships.setdefault("imported", []).extend(i for i in by_id if i in orphans)
    for b, ids in memberships.items():
        store.put_items([by_id[i] for i in ids if i in by_id], bench=b)
    _put_new(store, "responses", data.responses, store.put_responses)
    _put_new(store, "verdicts", data.verdicts, store.put_verdicts)
    known = {m["name"] for m in store.models()}
    for m in data.models:
        if m["name"] not in known:
            store.put_model(m["name"], m["spec"], m["family"], m["params_b"], m["meta"])
    read = {"items": len(data.items), "responses": len(data.responses), "verdicts": len(data.verdicts)}
    return ImportResult(str(data.folder), "store-export", run_id, read, _added(before, _counts(store)))


def _fingerprints(verdicts) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in verdicts:
        out.setdefault(v.judge, set()).add(v.fingerprint)
    return out


def _check_judges(store: Store, fingerprints: dict[str, set[str]]) -> None:
    """Refuse to write a judge's verdicts beside verdicts of the same name from another source: a stored
    verdict with another fingerprint would otherwise be replaced, or pooled with these."""
    for judge, allowed in fingerprints.items():
        others = [f for f in store.judge_fingerprints(judge).get(judge, {}) if f not in allowed]
        if others:
            raise MijaError(f"the store already holds verdicts by judge '{judge}' from another source or "
                            f"configuration; import under another name with --judge-prefix (e.g. "
                            f"--judge-prefix paper:)")


def _counts(store: Store) -> dict[str, int]:
    counts = store.counts()
    return {t: counts.get(t, 0) for t in _COUNTED}


def _added(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {t: after[t] - before[t] for t in _COUNTED}


def _notes(corpus: Corpus) -> list[str]:
    notes = [f"{n:,} output(s) of judge '{j}' could not be parsed: stored as unparsed (they abstain)"
             for j, n in sorted(corpus.unparsed.items())] + corpus.notes
    if corpus.no_response:
        notes.append(f"{corpus.no_response:,} prompt/model cell(s) without a response were skipped")
    return notes


def _default_bench(source: str) -> str:
    """The benchmark name an import files its items under: the file's or repo's name."""
    stem = Path(source.rstrip("/")).name
    return Path(stem).stem if "." in stem else stem
