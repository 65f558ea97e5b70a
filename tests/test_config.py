"""wsol.config: YAML loading, overrides and typed dataclass schemas with closest-key suggestions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from wsol.config import ConfigError, apply_overrides, build_dataclass, dataclass_to_dict, load_yaml, suggest


@dataclass
class Inner:
    name: str = "vgg16"
    size: tuple[int, int] = (224, 224)
    kwargs: dict[str, Any] = field(default_factory=dict)
    mode: Literal["a", "b"] = "a"
    scale: float = 1.0
    count: int = 3
    flag: bool = False
    maybe: float | None = None
    items: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    title: str = "run"


@dataclass
class Required:
    root: str


def test_build_nested_with_types() -> None:
    cfg = build_dataclass(
        Outer,
        {"inner": {"size": [10, 20], "scale": 2, "maybe": 3, "items": [1, 2], "kwargs": {"x": 1}}, "title": "t"},
    )
    assert cfg.inner.size == (10, 20)
    assert cfg.inner.scale == 2.0 and isinstance(cfg.inner.scale, float)  # ints accepted for floats
    assert cfg.inner.maybe == 3.0 and isinstance(cfg.inner.maybe, float)
    assert cfg.inner.items == [1, 2] and cfg.inner.kwargs == {"x": 1}
    assert cfg.title == "t" and cfg.inner.name == "vgg16"  # defaults kept


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"inner": {"nmae": "x"}}, "inner.nmae: unknown key (did you mean 'name'?)"),
        ({"innr": {}}, "innr: unknown key (did you mean 'inner'?)"),
        ({"inner": {"mode": "c"}}, "inner.mode: must be one of 'a', 'b', got 'c'"),
        ({"inner": {"count": 1.5}}, "inner.count: must be an integer, got 1.5"),
        ({"inner": {"count": True}}, "inner.count: must be an integer"),
        ({"inner": {"flag": "yes"}}, "inner.flag: must be true or false"),
        ({"inner": {"size": [1, 2, 3]}}, "inner.size: must be a list of 2 items"),
        ({"inner": {"maybe": "x"}}, "inner.maybe: must be a number, got 'x'"),
        ({"inner": {"count": -1}}, "inner: count must be >= 0, got -1"),
        ({"inner": 3}, "inner: must be a section (mapping), got 3"),
        ({"inner": {"items": [1, "a"]}}, "inner.items[1]: must be an integer"),
    ],
)
def test_errors_name_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_dataclass(Outer, values)
    assert message in str(err.value)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="missing required key"):
        build_dataclass(Required, {})
    assert build_dataclass(Required, {"root": "/x"}).root == "/x"


def test_overrides_parse_yaml_scalars_and_do_not_mutate() -> None:
    base = {"inner": {"name": "a"}}
    out = apply_overrides(base, ["inner.scale=0.5", "inner.flag=true", "inner.maybe=null", "inner.size=[3, 4]",
                                 "title=hello world", "inner.kwargs.k=v"])
    assert base == {"inner": {"name": "a"}}
    cfg = build_dataclass(Outer, out)
    assert (cfg.inner.scale, cfg.inner.flag, cfg.inner.maybe, cfg.inner.size) == (0.5, True, None, (3, 4))
    assert cfg.title == "hello world" and cfg.inner.kwargs == {"k": "v"}


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1", "inner.name.x=1"])
def test_bad_overrides(bad: str) -> None:
    with pytest.raises(ConfigError):
        apply_overrides({"inner": {"name": "a"}}, [bad])


def test_load_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+:\d+: invalid YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    import yaml

    cfg = build_dataclass(Outer, {"inner": {"size": [5, 6], "items": [7]}})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(dataclass_to_dict(cfg)))
    assert build_dataclass(Outer, load_yaml(path)) == cfg


def test_suggest() -> None:
    assert suggest("lrr", ["lr", "momentum"]) == " (did you mean 'lr'?)"
    assert suggest("zzzz", ["lr", "momentum"]) == ""
