"""Stand-ins for modules VBench's code imports but these tests never run (decord, OpenAI's clip, easydict, imageio,
...). Each is a real module object with a spec, left in sys.modules for the rest of the process: a library that
later probes for the package (diffusers' `importlib.util.find_spec("imageio")` when it is first imported) reads it
as not installed, where a bare namespace without `__spec__` made that probe raise in whichever test imported
diffusers next in the same worker."""

import importlib.machinery
import sys
import types


def stub_module(name: str, **attrs) -> None:
    """sys.modules[name] = a module holding `attrs`, unless a module of that name is already imported."""
    if name in sys.modules:
        return
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    vars(module).update(attrs)
    sys.modules[name] = module
