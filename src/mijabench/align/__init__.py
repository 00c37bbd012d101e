"""Alignment: the judged corpus, preference pairs with held-out splits and benign controls, DPO training, and
the re-audit before and after training.

Modules (heavy libraries — torch, transformers, trl, peft, datasets — are imported inside the functions that
need them, never here):

- ``corpus``: ``judged_rows``, ``export_corpus`` (Parquet + ``datasets`` folder, optional hub push)
- ``pairs`` / ``pairsdir``: ``PairOptions``, ``build_pairs``, ``make_pairs``, ``load_pairs``
- ``controls``: benign controls (built-in statements or ToxiGen ``annotated.jsonl``)
- ``config``: ``DPORunConfig`` (YAML)
- ``train``: ``train_dpo`` (TRL DPOTrainer, LoRA or full)
- ``evaluate``: ``evaluate_training`` (defense per group/strategy, over-refusal, the flag)
- ``margin``: ``preference_margins`` (policy minus reference log-prob gaps)
"""
