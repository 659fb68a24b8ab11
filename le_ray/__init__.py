"""le_ray: Localized Entropy vs BCE/focal CTR training, repeated as Ray tasks, answered with statistics."""

import time

__version__ = "0.1.0"

#: when this process first imported le_ray (Unix seconds): the start of a command's own wall clock. Not the
#: process's age: a process exec'd by a shell (``bash -c 'setup; python -m le_ray.repeats'``, a Ray job's
#: entrypoint) keeps the shell's start time, which would count the shell's earlier commands.
IMPORTED_AT = time.time()
