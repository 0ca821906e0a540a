"""Registry of regularizers keyed by the names users type in configs.

``build("heuristic", rate=0.1, k=3)`` → a module; ``available()`` → the keys.
An unknown name or parameter raises :class:`~medseg.errors.ConfigError` listing
the valid ones.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from .base import Regularizer

_REGISTRY: dict[str, type[Regularizer]] = {}


def register(name: str) -> Callable[[type[Regularizer]], type[Regularizer]]:
    """Class decorator: make a regularizer buildable under ``name``."""

    def deco(cls: type[Regularizer]) -> type[Regularizer]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"regularizer '{name}' registered twice")
        cls.key = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registry keys in catalogue order."""
    _load_all()
    from .catalogue import ORDER

    return sorted(_REGISTRY, key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))


def get(name: str) -> type[Regularizer]:
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown regularizer '{name}' (available: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def parameters(name: str) -> dict[str, Any]:
    """Constructor parameters of a regularizer with their defaults."""
    sig = inspect.signature(get(name).__init__)
    return {
        p.name: p.default
        for p in list(sig.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``params`` for ``name`` by building one instance; return them unchanged."""
    known = parameters(name)
    for key in params:
        if key not in known:
            valid = ", ".join(known) or "none"
            raise ConfigError(f"regularizer '{name}' has no parameter '{key}' (valid: {valid})")
    build(name, **params)
    return dict(params)


def build(name: str, **params: Any) -> Regularizer:
    """Build the regularizer ``name`` with ``params``; errors name the bad key/value."""
    cls = get(name)
    known = parameters(name)
    for key in params:
        if key not in known:
            valid = ", ".join(known) or "none"
            raise ConfigError(f"regularizer '{name}' has no parameter '{key}' (valid: {valid})")
    try:
        return cls(**params)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"regularizer '{name}': {exc}") from None


def spec_to_factory(spec: str | Mapping[str, Any] | None):
    """Turn a config spec (``None``, ``"name"`` or ``{"name": ..., **params}``) into
    ``(make_slot, input_module)``.

    ``make_slot(index, total)`` returns a fresh module for one stage's slot
    (identity for input-level methods); ``input_module`` is the module applied to
    the network input, or ``None``.
    """
    if spec is None:
        name, params = "none", {}
    elif isinstance(spec, str):
        name, params = spec, {}
    else:
        params = dict(spec)
        name = params.pop("name", "none")
    cls = get(name)
    build(name, **params)  # validate once, early

    if cls.placement == "input":
        return (lambda index, total: Regularizer()), build(name, **params)

    def make_slot(index: int, total: int) -> Regularizer:
        module = build(name, **params)
        module.configure_stage(index, total)
        return module

    return make_slot, None


_LOADED = False


def _load_all() -> None:
    # Import every module that registers a regularizer, in catalogue order.
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import catalogue  # noqa: F401
