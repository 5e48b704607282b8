"""Every exception class a domain defines derives from that domain's root.

A caller that wants "anything the conditions database refuses" catches ConditionsError, and a
newcomer finds every refusal of a domain below one class. Secondary bases (ValueError, KeyError,
FileNotFoundError ...) stay where callers rely on them.
"""

import importlib
import inspect
import pkgutil

import pytest

from b2cal_assets.accounts.errors import AccountsError
from b2cal_assets.auth.errors import AuthError
from b2cal_assets.calibration.framework.errors import CalibrationError, CalibrationFrameworkError, CalibrationPluginError
from b2cal_assets.conditions.errors import ConditionsError
from b2cal_assets.proxy.errors import ReverseProxyRefusal
from b2cal_assets.runs.errors import RunsError
from b2cal_assets.validation.errors import ValidationDomainError
from b2cal_assets.web.errors import WebError

ROOTS = {
    "b2cal_assets.runs": RunsError,
    "b2cal_assets.calibration": CalibrationError,
    "b2cal_assets.conditions": ConditionsError,
    "b2cal_assets.validation": ValidationDomainError,
    "b2cal_assets.accounts": AccountsError,
    "b2cal_assets.auth": AuthError,
    "b2cal_assets.proxy": ReverseProxyRefusal,
    "b2cal_assets.web": WebError,
}


def _exception_classes(package_name: str) -> list[type[BaseException]]:
    package = importlib.import_module(package_name)
    modules = [package]
    for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{package_name}."):  # a module has no __path__
        modules.append(importlib.import_module(info.name))
    found = {}
    for module in modules:
        for _, value in inspect.getmembers(module, inspect.isclass):
            defined_here = value.__module__ == package_name or value.__module__.startswith(f"{package_name}.")
            if defined_here and issubclass(value, BaseException):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


@pytest.mark.parametrize("package_name", sorted(ROOTS))
def test_every_exception_of_a_domain_derives_from_its_root(package_name: str) -> None:
    root = ROOTS[package_name]
    classes = _exception_classes(package_name)
    assert root in classes, f"{root.__qualname__} is not defined in {package_name}"
    # A root's own bases (auth's RefusalError, shared with the proxy) sit above it by design.
    strays = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if not issubclass(cls, root) and cls not in root.__mro__
    ]
    assert not strays, f"exception classes of {package_name} not derived from {root.__qualname__}: {strays}"


# Below the calibration root: the plug-ins' refusals and the contract's helpers (reading
# collector outputs, truth files) derive from CalibrationPluginError, the rest of the
# framework's from CalibrationFrameworkError.
CALIBRATION_SUB_ROOTS = {
    "b2cal_assets.calibration.plugins": CalibrationPluginError,
    "b2cal_assets.calibration.framework.contract": CalibrationPluginError,
}


@pytest.mark.parametrize("package_name", sorted(CALIBRATION_SUB_ROOTS))
def test_calibration_plugin_errors_derive_from_the_plugin_root(package_name: str) -> None:
    strays = [c.__qualname__ for c in _exception_classes(package_name)
              if not issubclass(c, CALIBRATION_SUB_ROOTS[package_name]) and c is not CalibrationPluginError]
    assert not strays, f"{package_name}: {strays} do not derive from CalibrationPluginError"


def test_calibration_framework_errors_derive_from_the_framework_root() -> None:
    plugin_modules = tuple(CALIBRATION_SUB_ROOTS)
    strays = [f"{c.__module__}.{c.__qualname__}" for c in _exception_classes("b2cal_assets.calibration")
              if not c.__module__.startswith(plugin_modules) and c not in CalibrationError.__mro__
              and c is not CalibrationPluginError and not issubclass(c, CalibrationFrameworkError)]
    assert not strays, f"{strays} do not derive from CalibrationFrameworkError"


def test_the_roots_are_distinct_domains() -> None:
    # No root hides another domain's errors (the proxy's refusals are not auth's, and so on).
    for name, root in ROOTS.items():
        for other_name, other in ROOTS.items():
            if name != other_name:
                assert not issubclass(root, other), f"{root.__qualname__} ({name}) derives from {other.__qualname__} ({other_name})"
