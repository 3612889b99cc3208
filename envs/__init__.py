"""Environment specs built with uv, one per incarnation generation.

Not built yet (issue 3): interpreter + requirement list, content hash as id,
built with the ``uv`` binary, resolved versions recorded.
"""
