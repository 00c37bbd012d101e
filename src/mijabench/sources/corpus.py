"""A judged corpus as records: benchmark items, responses and verdicts, checked in full before any write.

    corpus = read_corpus(open_table("mijabench_align.parquet"), source="file:mijabench_align.parquet")

Every row passes through the taxonomy (published names and labels are accepted) and every judge cell through
the judge parser, so a raw judge JSON such as ``{..., "class": "dangerous"}`` becomes a ``harmful`` verdict
with its reasoning, and a plain label is taken as it is. Responses carry the default sampling settings (the
published corpus does not record its own), so ids are stable and a second import of the same rows adds
nothing. Imported verdicts carry a fingerprint of their source, so they never pass for a live judge's.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..judge.parse import parse_verdict
from ..judge.prompts import judge_languages, vocabulary
from ..records import LABELS, BenchmarkItem, Response, SamplingSettings, Verdict, stable_id
from ..taxonomy import load_taxonomy
from .corpuscols import PER_RESPONSE, CorpusColumns, resolve_columns
from .digests import DIGEST_BYTES, hex_ids, sha256
from .seedmap import normalise_language
from .tables import JSONL_MARK, RowSource, clean_value

IMPORT_SETTINGS = SamplingSettings().to_dict()
LONG_COLUMNS = ("model", "response")  # roles of a long row that are not the item's
SHORT_LABEL = 40


class RecordIds:
    """``records.response_id`` and the verdict id, without building the canonical JSON per record: the
    settings key is fixed, item and response ids are hex, so only model and judge names need encoding, once
    each. Equal to ``stable_id`` of the same parts (tests/test_import.py checks it)."""

    def __init__(self):
        self.settings_key = SamplingSettings.from_dict(IMPORT_SETTINGS).key
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        encoded = self.names.get(name)
        if encoded is None:
            encoded = self.names[name] = json.dumps(name, ensure_ascii=False)
        return encoded

    def response(self, item_id: str, model: str) -> str:
        blob = f'["response","{item_id}",{self._name(model)},"{self.settings_key}"]'
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def verdict(self, response_id: str, judge: str) -> str:
        blob = f'["verdict","{response_id}",{self._name(judge)}]'
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    # the same ids for whole columns (the column reader): one comprehension per half, hashed on two cores
    def responses(self, item_ids: list[str], models: list[str]) -> list[str]:
        if len(item_ids) != len(models):
            raise ValueError("item ids and models differ in length")
        sha, key = sha256, self.settings_key
        name = {m: self._name(m) for m in set(models)}

        def part(lo: int, hi: int) -> bytes:
            return b"".join([sha(f'["response","{i}",{name[m]},"{key}"]'.encode()).digest()[:DIGEST_BYTES]
                             for i, m in zip(item_ids[lo:hi], models[lo:hi], strict=True)])
        return hex_ids(part, len(item_ids)).astype(str).tolist()

    def verdict_keys(self, response_ids: list[str], judge: str) -> np.ndarray:
        """The verdict ids as 16-byte ASCII (dtype S16): the column reader keeps them as bytes."""
        sha, tail = sha256, f",{self._name(judge)}]"

        def part(lo: int, hi: int) -> bytes:
            return b"".join([sha(f'["verdict","{r}"{tail}'.encode()).digest()[:DIGEST_BYTES]
                             for r in response_ids[lo:hi]])
        return hex_ids(part, len(response_ids))


@dataclass
class Corpus:
    source: str
    layout: str
    items: dict[str, BenchmarkItem] = field(default_factory=dict)
    responses: dict[str, Response] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    rows: int = 0
    unparsed: Counter = field(default_factory=Counter)  # judge -> judge outputs the parser could not read
    no_response: int = 0  # (prompt, model) cells without a reply
    model_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> its provenance, if known
    notes: list[str] = field(default_factory=list)  # what the reader wants the user told
    # read column by column (corpuscolumns): responses and verdicts as the store's columns, not as records
    response_columns: dict[str, list] | None = None
    verdict_columns: Any = None  # corpuscolumns.VerdictColumns
    # with verdict_columns: judge -> its fingerprint, for the judges that have a verdict there (the reader
    # knows them; gathering them from millions of rows took about a second at paper scale)
    column_judges: dict[str, str] | None = None

    @property
    def models(self) -> list[str]:
        if self.response_columns is not None:
            return sorted(set(self.response_columns["model"]))
        return sorted({r.model for r in self.responses.values()})

    @property
    def judges(self) -> list[str]:
        if self.column_judges is not None:
            return sorted(self.column_judges)
        return sorted({v.judge for v in self.verdicts})

    @property
    def response_count(self) -> int:
        return len(self.response_columns["id"]) if self.response_columns is not None else len(self.responses)

    @property
    def verdict_count(self) -> int:
        # the column reader's count is known before the verdict ids are (corpuscolumns.VerdictColumns)
        return self.verdict_columns.count if self.verdict_columns is not None else len(self.verdicts)

    def fingerprints(self) -> dict[str, set[str]]:
        """judge -> the fingerprints of its verdicts here."""
        if self.column_judges is not None:
            return {judge: {fingerprint} for judge, fingerprint in self.column_judges.items()}
        out: dict[str, set[str]] = {}
        pairs = ((v.judge, v.fingerprint) for v in self.verdicts)
        for judge, fingerprint in set(pairs):
            out.setdefault(judge, set()).add(fingerprint)
        return out


def import_fingerprint(source: str, judge: str) -> str:
    """What produced an imported verdict: the source and the judge it names, never a live judge's
    configuration. One per judge (not per column), so a judge's verdicts on every model of a wide table form
    one configuration that analysis may pool."""
    return stable_id("imported", source, judge, length=12)


def read_corpus(table: RowSource, *, source: str, overrides: dict[str, str] | None = None,
                language: str | None = None, judge_prefix: str = "", default_judge: str = "imported",
                run_id: str = "") -> Corpus:
    """Map every row of ``table``; raises InputError (file, row, field) on the first bad one."""
    fixed = normalise_language(language, field="--language") if language else None
    columns = resolve_columns(table.columns, table.origin, overrides, default_judge=default_judge,
                              fixed_language=fixed is not None)
    def fresh() -> RowReader:
        return RowReader(Corpus(source, columns.layout), columns, fixed, judge_prefix, run_id, table.origin)

    reader = fresh()
    if table.arrow is not None and not columns.votes:  # else not worth reading
        import pyarrow as pa

        from .corpuscolumns import read_columns
        try:
            arrow = table.arrow()  # None: the file's table may differ from its rows
            if arrow is not None and not _absent_or_null(arrow, reader) and read_columns(arrow, reader):
                return reader.corpus
        except (pa.ArrowException, OSError):
            pass  # an unreadable file: the row reader names the row where it breaks
        reader = fresh()  # given up: the rows, one by one, from the start
    corpus = reader.corpus
    for row_no, row in table.rows:
        corpus.rows += 1
        reader.read(row_no, row)
    return corpus


def _absent_or_null(table, reader: RowReader) -> bool:
    """Whether a JSONL file's table may hide the difference between a key a line lacks and a key set to
    null (Arrow has a null for both): an item's provenance keeps the extra keys each line has, so an extra
    column with a null leaves the file to the row reader."""
    if not (table.schema.metadata or {}).get(JSONL_MARK):
        return False
    extras = [c for c in table.column_names if c not in reader.used and c not in PER_RESPONSE]
    return any(table.column(c).null_count for c in extras)


class RowReader:
    """Reads one corpus row into its item, response and verdicts, with the cell-level caches; shared by the
    corpus import and the Inspect log import."""

    def __init__(self, corpus: Corpus, columns: CorpusColumns, language: str | None, judge_prefix: str,
                 run_id: str, origin: str):
        self.corpus, self.columns, self.language = corpus, columns, language
        self.judge_prefix, self.run_id, self.origin = judge_prefix, run_id, origin
        self.tax = load_taxonomy()
        self.first_row: dict[str, int] = {}  # response id -> row that gave it, for duplicate messages
        # A long table repeats each prompt once per model: an item is checked and hashed once, on its first
        # row, and found again by its raw cells. Ids and labels are cached the same way (see RecordIds).
        self.used = columns.used
        self.item_columns = [c for role, c in columns.roles.items() if role not in LONG_COLUMNS]
        self.items_by_cells: dict[tuple, BenchmarkItem] = {}
        self.ids = RecordIds()
        self.labels: dict[tuple[str, str], tuple[str, str]] = {}
        self.fingerprints: dict[str, str] = {}
        self.known: dict[tuple[str, str], str] = {}  # (taxonomy kind, cell) -> id, for the cells that passed

    def read(self, row_no: int, row: dict[str, Any]) -> None:
        loc = {"file": self.origin, "row": row_no}
        cells = tuple(row.get(c) for c in self.item_columns)
        item = self.items_by_cells.get(cells)
        if item is None:
            item = self.items_by_cells[cells] = self.item(row, loc)
            self.corpus.items.setdefault(item.id, item)
        cols = self.columns
        if cols.layout == "long":
            model = self.text(row, cols.roles["model"], loc, required=True)
            judged = {judge: row.get(column) for judge, column in cols.judges.items()}
            if cols.votes:
                judged.update(self.votes(row.get(cols.votes), loc))
            self.answer(item, model, row.get(cols.roles["response"]), cols.roles["response"], judged,
                        {j: cols.judges.get(j, cols.votes or "") for j in judged}, loc, row_no)
            return
        for model, column in cols.responses.items():
            judged = {j: row.get(c) for (j, m), c in cols.wide_judges.items() if m == model}
            sources = {j: c for (j, m), c in cols.wide_judges.items() if m == model}
            self.answer(item, model, row.get(column), column, judged, sources, loc, row_no)

    def item(self, row: dict[str, Any], loc: dict[str, Any]) -> BenchmarkItem:
        roles = self.columns.roles
        language = (normalise_language(row.get(roles["language"]), field=roles["language"], **loc)
                    if "language" in roles else self.language)
        category = self.text(row, roles.get("scenario_category"), loc)
        fields = dict(
            language=language,
            group=self.checked("group", self.text(row, roles["group"], loc, required=True), roles["group"],
                               loc),
            strategy=self.checked("strategy", self.text(row, roles["strategy"], loc, required=True),
                                  roles["strategy"], loc),
            prompt=self.text(row, roles["prompt"], loc, required=True),
            seed_text=self.text(row, roles.get("seed_text"), loc),
            scenario_category=self.checked("scenario_category", category, roles["scenario_category"], loc)
            if category else "",
            scenario_text=self.text(row, roles.get("scenario_text"), loc),
            pair_id=self.text(row, roles.get("pair_id"), loc),
            seed_id=self.text(row, roles.get("seed_id"), loc),
        )
        extras = {k: clean_value(v) for k, v in row.items()
                  if k not in self.used and k not in PER_RESPONSE}
        provenance = {"dataset": self.corpus.source, "row": loc["row"], **extras}
        return BenchmarkItem(**fields, provenance=provenance)

    def checked(self, kind: str, value: str, column: str, loc: dict[str, Any]) -> str:
        """The taxonomy id a cell names; each distinct cell is looked up once (a few dozen names repeat on
        every row), and a failed lookup raises each time, naming its own row."""
        found = self.known.get((kind, value))
        if found is None:
            found = self.known[(kind, value)] = getattr(self.tax, f"check_{kind}")(value, field=column, **loc)
        return found

    @staticmethod
    def text(row: dict[str, Any], column: str | None, loc: dict[str, Any], required: bool = False) -> str:
        if column is None:
            return ""
        value = clean_value(row.get(column))
        if value is not None and not isinstance(value, str):
            raise InputError(f"expected text, found {type(value).__name__}", field=column, **loc)
        value = (value or "").strip()
        if required and not value:
            raise InputError(f"empty {column}", field=column, **loc)
        return value

    def votes(self, value: Any, loc: dict[str, Any]) -> dict[str, Any]:
        column = self.columns.votes or ""
        value = clean_value(value)
        if value is None or value == "":
            return {}
        if isinstance(value, str):  # a CSV cell holds the list as JSON
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise InputError("votes is not a JSON list", field=column, **loc) from None
        if not isinstance(value, list) or not all(isinstance(v, dict) and v.get("judge") for v in value):
            raise InputError("votes must be a list of {judge, label} objects", field=column, **loc)
        return {str(v["judge"]): v.get("label") for v in value}

    def answer(self, item: BenchmarkItem, model: str, text: Any, column: str, judged: dict[str, Any],
               sources: dict[str, str], loc: dict[str, Any], row_no: int) -> None:
        text = clean_value(text)
        if text is None:  # this model has no reply to this prompt; a verdict without a reply is meaningless
            self.corpus.no_response += 1
            return
        if not isinstance(text, str):
            raise InputError(f"response is a {type(text).__name__}, not text", field=column, **loc)
        response = Response(item_id=item.id, model=model, settings=IMPORT_SETTINGS, text=text,
                            finish_reason=None, run_id=self.run_id, id=self.ids.response(item.id, model))
        seen = self.corpus.responses.get(response.id)
        if seen is not None:
            if seen.text != text:
                raise InputError(f"a second, different response by '{model}' to the prompt of row "
                                 f"{self.first_row[response.id]}", field=column, **loc)
            return
        self.corpus.responses[response.id] = response
        self.first_row[response.id] = row_no
        for judge, value in judged.items():
            verdict = self.verdict(response, item.language, judge, value, sources.get(judge, ""), loc)
            if verdict is not None:
                self.corpus.verdicts.append(verdict)

    def verdict(self, response: Response, language: str, judge: str, value: Any, column: str,
                loc: dict[str, Any]) -> Verdict | None:
        value = clean_value(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, dict | list):  # a Parquet struct holding the judge's JSON
            raw = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, str):
            raw = value
        else:
            raise InputError(f"judge output is a {type(value).__name__}, not text", field=column, **loc)
        if len(raw) <= SHORT_LABEL:  # a plain label, repeated on every row: parsed once
            label, reasoning = self.labels.get((raw, language)) or self.labels.setdefault(
                (raw, language), self.label(raw, language))
        else:  # a judge's own text, seldom twice the same: parsed each time, not kept in a cache
            label, reasoning = self.label(raw, language)
        name = f"{self.judge_prefix}{judge}"
        if label == "unparsed":
            self.corpus.unparsed[name] += 1
        return Verdict(response_id=response.id, judge=name, label=label, raw=raw, reasoning=reasoning,
                       run_id=self.run_id, fingerprint=self.fingerprint(judge),
                       id=self.ids.verdict(response.id, name))

    def fingerprint(self, judge: str) -> str:
        return self.fingerprints.get(judge) or self.fingerprints.setdefault(
            judge, import_fingerprint(self.corpus.source, judge))

    @staticmethod
    def label(raw: str, language: str) -> tuple[str, str]:
        """A plain label ('safe', 'perigosa', 'unparsed') as it is, anything else through the parser."""
        bare = raw.strip().strip("\"'").lower()
        if bare in LABELS:
            return bare, ""
        plain = vocabulary(language).label(raw)
        if plain is not None:
            return plain, ""
        parsed = parse_verdict(raw, language)
        # a corpus may pair an item with a judge that answered in the other language ("classe" on an
        # English item); the item's language is tried first, so a reading there always wins
        for other in judge_languages():
            if parsed.label != "unparsed" or other == language:
                continue
            parsed = parse_verdict(raw, other)
        return parsed.label, parsed.reasoning
