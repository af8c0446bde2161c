"""Every public module, class, function and method of amplink says what it is for."""

import importlib
import inspect
import pkgutil

import amplink


def _public_items():
    for info in pkgutil.walk_packages(amplink.__path__, "amplink."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        yield info.name, module
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{info.name}.{name}", obj
            elif inspect.isclass(obj):
                yield f"{info.name}.{name}", obj
                yield from _methods(f"{info.name}.{name}", obj)


def _methods(qualname, cls):
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        func = attr.fget if isinstance(attr, property) else attr
        if isinstance(func, classmethod | staticmethod):
            func = func.__func__
        if not inspect.isfunction(func):
            continue
        inherited = any(
            getattr(getattr(base, name, None), "__doc__", None) for base in cls.__mro__[1:]
        )
        if not inherited:  # an override documented by the method it overrides is fine
            yield f"{qualname}.{name}", func


def _documented(obj) -> bool:
    doc = (obj.__doc__ or "").strip()
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return False  # the signature a dataclass gets when it has no docstring
    return bool(doc)


def test_every_public_item_has_a_docstring():
    missing = [name for name, obj in _public_items() if not _documented(obj)]
    assert missing == []
