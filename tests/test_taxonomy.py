import pytest

from mijabench.taxonomy import load_taxonomy


def test_counts_and_languages():
    tax = load_taxonomy()
    assert len(tax.groups) == 16
    assert len(tax.strategies) == 4
    assert len(tax.scenario_categories) == 21
    assert len(tax.groups_for("en")) == 13
    assert len(tax.groups_for("pt")) == 9
    for item in [*tax.groups.values(), *tax.strategies.values(), *tax.scenario_categories.values()]:
        assert set(item.names) == {"en", "pt"} and all(item.names.values())
    for s in tax.strategies.values():
        assert all(len(d) > 100 for d in s.descriptions.values())


def test_aliases_map_source_labels():
    tax = load_taxonomy()
    assert tax.resolve_group("black/african-american folks") == "black"
    assert tax.resolve_group("mental_disability") == "mental_dis"
    assert tax.resolve_group("Povos Indígenas") == "native_american"
    assert tax.resolve_group("pessoas com deficiência") == "disability"
    assert tax.resolve_group("LGBTQIA+") == "lgbtq"
    assert tax.resolve_group("imigrante") == "immigrants"
    assert tax.resolve_group("martians") is None


def test_size_classes():
    tax = load_taxonomy()
    assert tax.size_class(1.0) == "nano"
    assert tax.size_class(3.8) == "small"
    assert tax.size_class(8) == "standard"
    assert tax.size_class(70) == "large"
    assert tax.size_class(0.135) is None


def test_the_package_yaml_reader_is_safe_load_faster():
    """``safe_yaml`` (libyaml's parser when PyYAML has it) reads every data file of the package as
    ``yaml.safe_load`` does, and refuses what safe_load refuses (no Python objects from data)."""
    from importlib import resources

    import yaml

    from mijabench.taxonomy import safe_yaml

    files = [f for f in resources.files("mijabench").rglob("*.yaml") if f.is_file()]
    assert len(files) >= 5
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert safe_yaml(text) == yaml.safe_load(text), f.name
    with pytest.raises(yaml.YAMLError):
        safe_yaml("!!python/object/apply:os.system ['true']")
