"""Scenario building: robust parsing of model lists, duplicate detection, and the resumable builder."""

import json
import random
import zlib

import pytest

from mijabench.backends.base import Backend, Generation, GenerationRequest
from mijabench.backends.registry import ModelConfig
from mijabench.bench import NearDuplicateIndex, build_scenarios, builtin_scenarios, parse_text_list
from mijabench.bench.datafiles import example_scenarios
from mijabench.bench.textsim import jaccard, shingles
from mijabench.records import SamplingSettings
from mijabench.taxonomy import load_taxonomy

MODEL = ModelConfig(spec="scripted:scenario-writer", name="scenario-writer",
                    settings=SamplingSettings(temperature=1.0, max_tokens=400))
WORDS = ("lantern harbour glacier orchard bakery comet violin ferry canyon library beehive tram festival "
         "desert monastery clocktower market observatory lagoon quarry meadow lighthouse bazaar volcano "
         "aqueduct rooftop greenhouse workshop carnival canal vineyard junkyard planetarium reef tundra "
         "caravan harvest puppet telescope drizzle mosaic kiln blizzard sundial labyrinth compass").split()


class Killed(BaseException):
    pass


def invented(key: str, n: int) -> list[str]:
    rng = random.Random(zlib.crc32(key.encode()))
    return [f"A {' '.join(rng.sample(WORDS, 7))} scene number {rng.randint(0, 10**6)}." for _ in range(n)]


class ScenarioWriter(Backend):
    """Answers each call with a JSON list of invented scenarios; ``broken`` calls mix in damaged items,
    ``repeat`` calls answer with copies of the category's examples, ``kill_after`` simulates a kill."""

    name = "scenario-writer"
    default_concurrency = 4

    def __init__(self, broken=False, repeat=False, kill_after=None):
        self.broken, self.repeat, self.kill_after = broken, repeat, kill_after
        self.calls: list[str] = []

    async def generate(self, request: GenerationRequest) -> Generation:
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise Killed()
        self.calls.append(request.key)
        n = int(request.messages[-1]["content"].split()[1])  # "Write N new scenarios ..."
        if self.repeat:
            lang, cat, _ = request.key.split("/")
            return Generation(text=json.dumps(list(example_scenarios(lang)[cat])), finish_reason="stop")
        items = invented(request.key, n)
        text = json.dumps(items, ensure_ascii=False)
        if self.broken:  # a broken item in the middle, a trailing comma, a fence around it all
            text = "```json\n[" + json.dumps(items[0]) + ', "unterminated \n' + \
                   ",\n".join(json.dumps(t) for t in items[1:]) + ",]\n```"
        return Generation(text=text, finish_reason="stop")


# -- parsing ---------------------------------------------------------------------------------------------
def test_parse_plain_fenced_and_trailing_comma_lists():
    assert parse_text_list('["A quiet harbour at dawn.", "A busy market at noon."]').items == \
        ["A quiet harbour at dawn.", "A busy market at noon."]
    fenced = parse_text_list('Here you go:\n```json\n[\n  "A quiet harbour at dawn.",\n  "A busy market at '
                             'noon.",\n]\n```\nEnjoy!')
    assert fenced.items == ["A quiet harbour at dawn.", "A busy market at noon."] and fenced.problems == []


def test_parse_keeps_the_good_items_around_broken_ones():
    raw = ('[\n"A quiet harbour at dawn.",\n"A broken "quoted" item that is long",\n42,\n'
           '{"scenario": "A glass bridge over a canyon."},\n"ok",\n"A busy market at noon."\n]')
    parsed = parse_text_list(raw)
    assert parsed.items == ["A quiet harbour at dawn.", "A glass bridge over a canyon.",
                            "A busy market at noon."]
    assert any("broken JSON" in p for p in parsed.problems)
    assert any("not a string" in p for p in parsed.problems)
    assert any("too short" in p for p in parsed.problems)


def test_parse_a_list_cut_off_by_the_token_limit():
    parsed = parse_text_list('["A quiet harbour at dawn.", "A busy market at noon.", "A night train thro')
    assert parsed.items == ["A quiet harbour at dawn.", "A busy market at noon."]
    assert parsed.problems  # the cut item is reported, not silently lost


def test_parse_fallbacks_and_nothing_usable():
    parsed = parse_text_list("1. A quiet harbour at dawn.\n2. A busy market at noon.\n")
    assert parsed.items == ["A quiet harbour at dawn.", "A busy market at noon."]
    assert "no JSON list" in parsed.problems[0]
    nothing = parse_text_list("I would rather not.")
    assert nothing.items == [] and nothing.problems
    wrapped = parse_text_list('{"scenarios": ["A quiet harbour at dawn."]}')
    assert wrapped.items == ["A quiet harbour at dawn."]
    # never evaluated: code-like content is just an unparseable item
    assert parse_text_list('[__import__("os").system("true"), "A quiet harbour at dawn."]').items == \
        ["A quiet harbour at dawn."]


# -- duplicates ------------------------------------------------------------------------------------------
def test_exact_and_near_duplicates():
    index = NearDuplicateIndex(0.7)
    index.add("a", "A lantern festival in a river town where every family sets a paper boat adrift.")
    assert index.find("a lantern festival in a river town, where every family sets a paper boat adrift!") \
        == "a"
    assert index.find("A lantern festival in a river town where each family sets a paper boat adrift.") == "a"
    assert index.find("A chess tournament held on a ferry drifting between two harbours.") is None
    exact_only = NearDuplicateIndex(1.0)
    exact_only.add("a", "A lantern festival in a river town.")
    assert exact_only.find("a LANTERN festival in a river town") == "a"
    assert exact_only.find("A lantern festival in a river city.") is None


def test_lsh_finds_every_pair_a_brute_force_search_finds():
    rng = random.Random(5)
    base = [" ".join(rng.sample(WORDS, 12)) for _ in range(40)]
    texts = []
    for text in base:  # each base text plus variants with one or two words swapped
        texts.append(text)
        for _ in range(3):
            words = text.split()
            for _ in range(rng.randint(1, 2)):
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            texts.append(" ".join(words))
    for threshold in (0.5, 0.7, 0.85):
        index = NearDuplicateIndex(threshold)
        missed = 0
        for n, text in enumerate(texts):
            sh = shingles(text)
            brute = [m for m in range(n) if jaccard(sh, shingles(texts[m])) >= threshold]
            found = index.find(text)
            if brute:
                missed += found is None
            else:
                assert found is None  # no false positives: the decision is the exact Jaccard
            index.add(str(n), text)
        assert missed == 0, threshold


def test_hand_written_examples_are_complete_and_distinct():
    tax = load_taxonomy()
    for language in tax.languages:
        examples = example_scenarios(language)
        assert set(examples) == set(tax.scenario_categories)
        index = NearDuplicateIndex(0.7)
        for category, texts in examples.items():
            assert len(texts) == 5
            for n, text in enumerate(texts):
                assert 4 <= len(text.split()) <= 30
                assert index.add_if_new(f"{category}/{n}", text) is None, text
    assert len(builtin_scenarios()) == 2 * 21 * 5


# -- the builder -----------------------------------------------------------------------------------------
def test_build_fills_every_cell_and_records_provenance(store):
    backend = ScenarioWriter(broken=True)
    report = build_scenarios(store, MODEL, per_category=6, languages=["en", "pt"],
                             categories=["history", "humor_absurdity"], per_call=4, backend=backend)
    assert [(c.language, c.category, c.stored) for c in report.cells] == [
        ("en", "history", 6), ("en", "humor_absurdity", 6), ("pt", "history", 6),
        ("pt", "humor_absurdity", 6)]
    assert all(c.unparsed >= 1 for c in report.cells)  # the broken item of each call was dropped, not fatal
    stored = store.scenarios()
    assert len(stored) == 24
    for s in stored:
        prov = s.provenance
        assert prov["builder"] == "model" and prov["model"] == "scenario-writer"
        assert prov["settings"]["temperature"] == 1.0 and prov["settings"]["max_tokens"] == 400
        assert prov["template_version"].startswith(f"scenarios/{s.language}@v1+")
        assert isinstance(prov["call_index"], int) and prov["per_call"] == 4
    calls = [e for e in store.events(stage="scenarios") if e["kind"] == "call"]
    assert len(calls) == len(backend.calls) and all(e["detail"]["problems"] for e in calls)
    # complete cells are skipped next time: no call at all
    again = ScenarioWriter()
    report2 = build_scenarios(store, MODEL, per_category=6, languages=["en", "pt"],
                              categories=["history", "humor_absurdity"], backend=again)
    assert again.calls == [] and all(c.skipped for c in report2.cells)


def test_duplicates_of_the_examples_are_dropped_and_the_call_limit_holds(store):
    report = build_scenarios(store, MODEL, per_category=3, languages=["en"], categories=["history"],
                             max_calls=2, backend=ScenarioWriter(repeat=True))
    cell = report.cells[0]
    assert cell.stored == 0 and cell.calls == 2 and cell.duplicates == 10
    assert report.short == [cell]
    assert any(e["kind"] == "short" for e in store.events(stage="scenarios"))


def test_a_killed_scenario_build_resumes_without_redoing_calls(store):
    cats = ["history", "mythology_fantasy", "economy_work"]
    with pytest.raises(Killed):
        build_scenarios(store, MODEL, per_category=4, languages=["en"], categories=cats, per_call=2,
                        backend=ScenarioWriter(kill_after=4), concurrency=1)
    before = len(store.scenarios())
    assert 0 < before < 12
    resumed = ScenarioWriter()
    report = build_scenarios(store, MODEL, per_category=4, languages=["en"], categories=cats, per_call=2,
                             backend=resumed)
    assert len(store.scenarios()) == 12 and all(c.stored == 4 for c in report.cells)
    assert len(resumed.calls) == (12 - before + 1) // 2
    # calls are numbered on from the killed run, so no prompt (and no sampling seed) repeats
    indices = [s.provenance["call_index"] for s in store.scenarios(category="history")]
    assert len(set(indices)) == len(indices) // 2
