"""Inspect logs (``.eval`` or ``.json``; one file or a folder of them) into items, responses and verdicts.

    corpus, record = read_logs(Path("logs/"), overrides={}, language=None, judge_prefix="", run_id="...")

Each sample becomes a row with the sample's metadata, ``prompt`` (its input), ``model`` (the log's model)
and ``response`` (its output), plus ``score.<scorer>`` for each of its scores. The row goes through the
same column mapping and checks as a judged corpus (``sources.corpuscols``, ``sources.corpus``), so
published names are accepted and a sample without a group, strategy or language is refused in one line
that names what is missing and the ``--columns`` that would map it. Samples of the ``mijabench/mijabench``
task carry everything by default.

Responses keep the log's model name and the sampling settings Inspect used (its generate config: what was
not set is recorded as null, the provider's default, never as mijabench's default). Verdicts are those the
mijabench scorers recorded, with the judge fingerprints recorded at scoring time; a score of another
scorer is a verdict only when mapped with ``--columns judge:NAME=score.SCORER``. The model's metadata keeps
the Inspect model name, generate config, base URL and log location.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from inspect_ai.log import EvalLog, EvalSample, list_eval_logs, read_eval_log

from ...errors import InputError
from ...paths import sha256_file
from ...records import LABELS, Response, SamplingSettings, Verdict, stable_id
from ...sources.corpus import Corpus
from ...sources.corpus import RowReader as CorpusRows  # a corpus row's item and label reading, shared
from ...sources.corpuscols import resolve_columns
from ...sources.seedmap import normalise_language
from .scorers import VERDICTS_KEY

SCORE_PREFIX = "score."
# Inspect's stop reasons -> mijabench's finish reasons ("length" is counted as truncated)
FINISH = {"max_tokens": "length", "model_length": "length"}


def log_paths(path: Path) -> list[Path]:
    """The log files at ``path``: the file itself, or every Inspect log under a folder, in name order."""
    if path.is_file():
        return [path]
    found = sorted(Path(unquote(urlparse(info.name).path)) for info in list_eval_logs(str(path)))
    if not found:
        raise InputError("no Inspect logs (.eval, or .json named by Inspect) in this folder", file=str(path))
    return found


def digest_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(sha256_file(p).encode())
    return digest.hexdigest()


def read_logs(paths: list[Path], *, source: str, overrides: dict[str, str], language: str | None,
              judge_prefix: str, run_id: str) -> tuple[Corpus, list[dict[str, Any]]]:
    """Every sample of every log as records, checked in full; and, per log, what produced it."""
    corpus = Corpus(source, "inspect")
    fixed = normalise_language(language, field="--language") if language else None
    reader = _LogReader(corpus, overrides, fixed, judge_prefix, run_id)
    return corpus, [reader.read(path) for path in paths]


def _open(path: Path) -> EvalLog:
    try:
        return read_eval_log(str(path))
    except Exception as exc:  # a JSON file that is not a log, a damaged archive: one line naming the file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError(f"not a readable Inspect log ({reason})", file=str(path)) from None


def generate_config(log: EvalLog) -> dict[str, Any]:
    """What the model was asked with: the model's config, overridden by the task's (as Inspect merges)."""
    config = log.eval.model_generate_config
    if log.plan is not None:
        config = config.merge(log.plan.config)
    return config.model_dump(exclude_none=True, mode="json")


def settings_of(config: dict[str, Any], sample: EvalSample) -> dict[str, Any]:
    """mijabench's sampling settings for one sample: unset values stay None (the provider's default), and
    the system prompt is what the model saw: the config's system message and the sample's own."""
    system = [config["system_message"]] if config.get("system_message") else []
    for message in sample.messages:
        if message.role != "system":
            break
        system.append(message.text)
    effort = config.get("reasoning_effort")
    return SamplingSettings(
        max_tokens=config.get("max_tokens"), temperature=config.get("temperature"), top_p=config.get("top_p"),
        seed=config.get("seed"), system_prompt="\n\n".join(system) or None,
        thinking=bool(config.get("reasoning_tokens")) or effort not in (None, "none")).to_dict()


def input_text(sample: EvalSample) -> str:
    if isinstance(sample.input, str):
        return sample.input
    return "\n".join(m.text for m in sample.input if m.role == "user")


class _LogReader:
    def __init__(self, corpus: Corpus, overrides: dict[str, str], language: str | None, judge_prefix: str,
                 run_id: str):
        self.corpus, self.overrides, self.language = corpus, overrides, language
        self.judge_prefix, self.run_id = judge_prefix, run_id
        self.first: dict[str, tuple[str, int]] = {}  # response id -> (log, sample number) that gave it
        self.verdict_ids: set[str] = set()
        self.mismatched_ids = 0

    def read(self, path: Path) -> dict[str, Any]:
        log = _open(path)
        origin = str(path)
        if log.samples is None:
            raise InputError("the log holds no samples (a header-only read or an empty run)", file=origin)
        epochs = log.eval.config.epochs or 1
        if epochs > 1:
            raise InputError(f"the log has {epochs} epochs; mijabench keeps one response per item, model and "
                             "settings: import a run with --epochs 1", file=origin)
        model, config = log.eval.model, generate_config(log)
        rows = [self.row(sample, model) for sample in log.samples]
        names = list(dict.fromkeys(k for row in rows for k in row))
        columns = resolve_columns(names, origin, self.overrides, fixed_language=self.language is not None)
        items = CorpusRows(self.corpus, columns, self.language, self.judge_prefix, self.run_id, origin)
        items.used = columns.used | {n for n in names if n.startswith(SCORE_PREFIX)}
        judges = {r.split(":", 1)[1]: c for r, c in self.overrides.items() if r.startswith("judge:")}
        served = set()
        self.corpus.rows += len(rows)
        for number, (sample, row) in enumerate(zip(log.samples, rows, strict=True), start=1):
            loc = {"file": origin, "row": number}
            item = items.item(row, loc)
            stated = row.get("item_id")
            if isinstance(stated, str) and stated and stated != item.id:
                self.mismatched_ids += 1
            self.corpus.items.setdefault(item.id, item)
            if sample.output.model:
                served.add(sample.output.model)
            response = self.response(sample, item.id, model, settings_of(config, sample), loc)
            if response is None or response.error is not None:  # a failed sample has nothing to judge
                continue
            for verdict in self.verdicts(sample, response.id, loc):
                self.add(verdict)
            for judge, column in judges.items():  # read as a corpus's judge column is
                self.add(items.verdict(response, item.language, judge, row.get(column), column, loc))
        record = {"log": origin, "task": log.eval.task, "eval_id": log.eval.eval_id, "status": log.status,
                  "created": log.eval.created, "model": model, "base_url": log.eval.model_base_url,
                  "generate_config": config, "served_models": sorted(served), "samples": len(log.samples)}
        meta = self.corpus.model_meta.setdefault(model, {"imported_from": self.corpus.source,
                                                         "inspect_logs": []})
        meta["inspect_logs"].append(record)
        if self.mismatched_ids and not any("item_id" in n for n in self.corpus.notes):
            self.corpus.notes.append("some samples carry an item_id that differs from their item's content; "
                                     "they are filed under the id of their content")
        return record

    @staticmethod
    def row(sample: EvalSample, model: str) -> dict[str, Any]:
        row = dict(sample.metadata or {})
        completion = sample.output.completion if sample.output.choices else ""
        row.update({"prompt": input_text(sample), "model": model, "response": completion})
        for name, score in (sample.scores or {}).items():
            row[f"{SCORE_PREFIX}{name}"] = score.value
        return row

    def response(self, sample: EvalSample, item_id: str, model: str, settings: dict[str, Any],
                 loc: dict[str, Any]):
        output = sample.output
        error = f"inspect: {sample.error.message}" if sample.error is not None else None
        text = None if error else (output.completion if output.choices else "")
        usage = output.usage
        stop = output.choices[0].stop_reason if output.choices else None
        response = Response(item_id=item_id, model=model, settings=settings, text=text,
                            prompt_tokens=usage.input_tokens if usage else None,
                            completion_tokens=usage.output_tokens if usage else None, latency_s=output.time,
                            finish_reason=FINISH.get(stop, stop) if stop else None, error=error,
                            run_id=self.run_id)
        seen = self.corpus.responses.get(response.id)
        if seen is not None:
            if (seen.text, seen.error) != (text, error):
                where, number = self.first[response.id]
                raise InputError(f"a second, different response by '{model}' to the item of {where} sample "
                                 f"{number}, under the same settings", **loc)
            return None
        self.corpus.responses[response.id] = response
        self.first[response.id] = (loc["file"], loc["row"])
        return response

    def verdicts(self, sample: EvalSample, response_id: str, loc: dict[str, Any]):
        for name, score in (sample.scores or {}).items():
            recorded = (score.metadata or {}).get(VERDICTS_KEY)
            if recorded is None:
                continue
            field = f"scores.{name}.metadata.{VERDICTS_KEY}"
            if not isinstance(recorded, list):
                raise InputError("expected a list of verdicts", field=field, **loc)
            for v in recorded:
                ok = isinstance(v, dict) and isinstance(v.get("judge"), str) and v["judge"] \
                    and v.get("label") in LABELS and isinstance(v.get("fingerprint", ""), str)
                if not ok:
                    raise InputError("a verdict needs a judge, a label (safe, harmful, unparsed) and a "
                                     "fingerprint", field=field, **loc)
                judge = f"{self.judge_prefix}{v['judge']}"
                if v["label"] == "unparsed":
                    self.corpus.unparsed[judge] += 1
                yield Verdict(response_id=response_id, judge=judge, label=v["label"],
                              raw=str(v.get("raw") or ""), reasoning=str(v.get("reasoning") or ""),
                              error=v.get("error") or None, run_id=self.run_id,
                              fingerprint=v.get("fingerprint") or "")

    def add(self, verdict: Verdict | None) -> None:
        if verdict is None or verdict.id in self.verdict_ids:
            return
        self.verdict_ids.add(verdict.id)
        self.corpus.verdicts.append(verdict)


def run_id_of(name: str, digest: str) -> str:
    return f"import-{stable_id(name, digest, length=12)}"
