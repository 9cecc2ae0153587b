"""The HTTP worker kind: calls a function served by an app with an official Inngest SDK (its SDK protocol).

The worker process is the same (:mod:`pipeline.workers.service`: consumer group, offsets committed after the
outcome is acknowledged, at least once per step); for a function synced over HTTP it calls the app instead of a
Python handler. Three small parts, each pure but the last:

* :mod:`.request` builds the call (URL with ``fnId``/``stepId``, body with the event, the memoised steps keyed by
  their hashed ids, and ``ctx``; the signature when a signing key is set);
* :mod:`.ops` reads the answer (200 result, 206 operations, 4xx/5xx error with ``X-Inngest-No-Retry`` and
  ``Retry-After``) and maps it onto the outcome records the run owner already applies;
* :mod:`.call` makes the calls (one, or a follow-up per planned step) on the worker's event loop.
"""
