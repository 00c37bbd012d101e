"""Where seeds and benchmarks come from: local files, the Hugging Face hub, the built-in demo set.

Every loader maps its rows onto `mijabench.records` through the taxonomy, and reports a bad row as an
``InputError`` naming the file, the row and the field. `datasets` is imported only by hub loaders.
"""

from .benchmark import load_benchmark_file
from .build import SeedBuild, build_seeds, load_source
from .demo import demo_seeds
from .files import load_seed_file, write_seeds_jsonl
from .filters import RowFilter, parse_filter
from .hub import items_from_dataset, load_hub_benchmark, load_hub_seeds, open_dataset, seeds_from_dataset
from .sampling import BalancedSample, GroupBalance, balance
from .seedmap import LoadStats, SeedColumns

__all__ = [
    "BalancedSample", "GroupBalance", "LoadStats", "RowFilter", "SeedBuild", "SeedColumns", "balance",
    "build_seeds", "demo_seeds", "items_from_dataset", "load_benchmark_file", "load_hub_benchmark",
    "load_hub_seeds", "load_seed_file", "load_source", "open_dataset", "parse_filter", "seeds_from_dataset",
    "write_seeds_jsonl",
]
