"""Hydra plugins of `stroke`: Hydra only loads plugins from the `hydra_plugins` namespace.

The classes here are thin and import their implementation (`stroke.sweep`) lazily, because
Hydra imports every plugin module on every start of `stroke-train`.
"""
