"""The parts of the generation engine; ``scheduler/engine.py`` is the façade that assembles them.

From the bottom up: ``state`` (configuration and the in-process state several parts share),
``roster`` (the providers, their breakers, the admins' switches, recent latency), ``settle`` (a
task that failed, a job no task can change any more), ``results`` (callbacks, storing, likeness),
then ``polling`` and ``submit`` side by side. A part imports only parts below it, never the façade
(pyproject.toml's import-linter contracts check both).
"""
