"""Audit config field names: ``bench`` names the benchmark in the store, ``prompts_from`` says where its
prompts are loaded from; the old name of the latter still reads, with a warning."""

from __future__ import annotations

import pytest

from mijabench.audit.config import make_config, preset
from mijabench.errors import MijaError


def test_published_presets_load_their_prompts_under_the_new_name():
    for name in ("quick", "paper", "budget"):
        assert make_config(preset(name)).prompts_from == "AKCIT/mijabench"


def test_the_old_name_still_reads_with_a_warning():
    with pytest.warns(FutureWarning, match="field 'benchmark' is now 'prompts_from'"):
        config = make_config({"bench": "b", "benchmark": "items.jsonl"}, source="my.yaml")
    assert config.bench == "b" and config.prompts_from == "items.jsonl"


def test_both_names_at_once_is_one_clear_error():
    one_line = r"^my.yaml: give 'prompts_from' only \('benchmark' is its old name\)$"
    with pytest.raises(MijaError, match=one_line):
        make_config({"prompts_from": "a.jsonl", "benchmark": "b.jsonl"}, source="my.yaml")


def test_a_later_layer_under_the_old_name_overrides_an_earlier_one():
    with pytest.warns(FutureWarning):
        config = make_config(preset("quick"), {"benchmark": "local.jsonl"})
    assert config.prompts_from == "local.jsonl"


def test_an_unset_old_flag_changes_nothing_and_warns_nothing(recwarn):
    config = make_config(preset("quick"), {"prompts_from": None, "benchmark": None}, source="flags")
    assert config.prompts_from == "AKCIT/mijabench" and not recwarn.list


def test_the_old_flag_given_alone_is_used():
    with pytest.warns(FutureWarning):
        config = make_config(preset("quick"), {"prompts_from": None, "benchmark": "x.jsonl"}, source="flags")
    assert config.prompts_from == "x.jsonl"
