"""The whole alignment chain on CPU with the embedded SmolLM2-135M model: a scripted run, judged, exported,
turned into pairs with a held-out group, a few LoRA DPO steps, and the before/after re-audit. Kept to a
couple of minutes: tiny lengths, three steps, a handful of evaluation prompts, short answers."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mijabench.align.corpus import export_corpus
from mijabench.align.models import load_causal_lm, load_tokenizer, load_with_adapter
from mijabench.align.pairs import PairOptions
from mijabench.align.pairsdir import load_pairs, make_pairs
from mijabench.cli.main import cli
from test_align_pairs import judged_store

pytestmark = pytest.mark.slow

TINY = """\
max_steps: 3
batch_size: 2
grad_accumulation: 1
learning_rate: 1.0e-3
warmup_ratio: 0.0
max_length: 128
lora_r: 4
lora_alpha: 8
lora_dropout: 0.0
lora_target_modules: [q_proj, v_proj]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """export -> pairs -> DPO through the library and the command line; returns the folders."""
    root = tmp_path_factory.mktemp("align")
    with judged_store(root / "ws") as store:
        export_corpus(store, root / "corpus")
        make_pairs(store, root / "pairs", PairOptions(holdout_groups=("muslim",), benign_per_group=2))
    (root / "tiny.yaml").write_text(TINY)
    result = CliRunner().invoke(cli, ["align", "dpo", "--pairs", str(root / "pairs"), "--base",
                                      "local:smollm2-135m", "--out", str(root / "dpo"), "--config",
                                      str(root / "tiny.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root


def test_chain_trains_and_reaudits(trained):
    dpo = trained / "dpo"
    run = json.loads((dpo / "run.json").read_text())
    assert run["steps"] == 3 and run["train_pairs_used"] > 0 and run["device"] == "cpu"
    assert run["split"]["groups_never_in_train"] == ["muslim"]
    history = json.loads((dpo / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert (dpo / "loss.png").stat().st_size > 1000 and (dpo / "log_history.csv").is_file()
    assert (dpo / "adapter" / "adapter_config.json").is_file() and not (dpo / "training_args.bin").exists()

    result = CliRunner().invoke(cli, [
        "align", "evaluate", "--base", "local:smollm2-135m", "--adapter", str(dpo), "--pairs",
        str(trained / "pairs"), "--max-prompts", "4", "--max-benign", "4", "--max-new-tokens", "12",
        "--margin-pairs", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "defense rate (before -> after)" in result.output and "over-refusal" in result.output
    summary = json.loads((dpo / "evaluation" / "summary.json").read_text())
    groups = {g["group"]: g for g in summary["groups"]}
    assert groups["muslim"]["seen"] is False and any(g["seen"] for g in groups.values())
    for row in summary["groups"]:
        assert row["before"]["n"] > 0 and row["after"]["n"] > 0
    assert summary["over_refusal"]["all"]["before"]["n"] == 4
    assert isinstance(summary["flags"]["safer_but_over_refusing"], bool)
    assert summary["margins"]["train"]["pairs"] == 4
    html = (dpo / "evaluation" / "report.html").read_text()
    assert "held out" in html and "Content warning" in html

    # resuming the same evaluation generates nothing new; another length is refused, not mixed in
    again = CliRunner().invoke(cli, [
        "align", "evaluate", "--base", "local:smollm2-135m", "--adapter", str(dpo), "--pairs",
        str(trained / "pairs"), "--max-prompts", "4", "--max-benign", "4", "--max-new-tokens", "16"])
    assert again.exit_code != 0 and "max_new_tokens" in str(again.exception)


def test_adapter_raises_preference_margin_on_training_pairs(trained):
    """log p(chosen) - log p(rejected) under the policy minus the same under the reference (the base) went
    up: DPO moved the model in the right direction on the pairs it trained on."""
    from mijabench.align.evaluate import even_sample
    from mijabench.align.margin import preference_gaps, preference_margins
    from mijabench.align.models import resolve_base

    pairs = even_sample(load_pairs(trained / "pairs").train, "group", 6, seed=0)
    source = resolve_base("local:smollm2-135m")
    tokenizer = load_tokenizer(source)
    before = preference_gaps(load_causal_lm(source), tokenizer, pairs, max_length=128)
    policy = load_with_adapter(source, trained / "dpo" / "adapter")
    after = preference_gaps(policy, tokenizer, pairs, max_length=128)
    change = after - before
    assert change.mean() > 0 and (change > 0).mean() >= 0.75
    # the margin the evaluation reports (adapter switched off = reference) is the same quantity
    margins = preference_margins(policy, tokenizer, pairs[:2], max_length=128)
    assert np.allclose(margins, change[:2], atol=1e-3)
