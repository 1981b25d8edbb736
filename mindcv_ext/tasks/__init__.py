"""Tasks: what a method trains, evaluates, exports and predicts, on the one engine.

``get_task(name)`` returns a :class:`Task` subclass; ``load_config`` reads a config in two phases
(the task named by ``task:`` declares its own sections). ``classification`` and ``adder_ptq``
are built in; demos register with ``register_demo``.
"""
from .base import Task
from .demos import get_demo, list_demos, register_demo
from .registry import get_task, list_tasks, load_config, register_task

__all__ = ["Task", "get_task", "list_tasks", "load_config", "register_task", "register_demo", "get_demo",
           "list_demos"]
