"""Where seeds, benchmarks and judged corpora come from: local files, the Hugging Face hub, the built-in demo
set, store exports.

Every loader maps its rows onto `mijabench.records` through the taxonomy, and reports a bad row as an
``InputError`` naming the file, the row and the field. `datasets` is imported only by hub loaders.
"""

from .benchmark import load_benchmark_file
from .build import SeedBuild, build_seeds, load_source
from .corpus import Corpus, read_corpus
from .demo import demo_seeds
from .files import load_seed_file, write_seeds_jsonl
from .filters import RowFilter, parse_filter
from .hub import items_from_dataset, load_hub_benchmark, load_hub_seeds, open_dataset, seeds_from_dataset
from .importer import ImportResult, import_corpus, prepare_import, write_import
from .sampling import BalancedSample, GroupBalance, balance
from .seedmap import LoadStats, SeedColumns

__all__ = [
    "BalancedSample", "Corpus", "GroupBalance", "ImportResult", "LoadStats", "RowFilter", "SeedBuild",
    "SeedColumns", "balance", "build_seeds", "demo_seeds", "import_corpus", "items_from_dataset",
    "load_benchmark_file", "load_hub_benchmark", "load_hub_seeds", "load_seed_file", "load_source",
    "open_dataset", "parse_filter", "prepare_import", "read_corpus", "seeds_from_dataset", "write_import",
    "write_seeds_jsonl",
]
