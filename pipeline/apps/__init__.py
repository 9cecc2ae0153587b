"""Apps served over HTTP with the official Inngest SDKs: their sync, and the ``functions`` topic that holds them.

* :mod:`.register` reads what an SDK sends to ``POST /fn/register`` (either SDK's spelling) into records;
* :mod:`.store` writes those records and loads and follows the topic into a :class:`~pipeline.sdk.app.Registry`;
* :mod:`.sync` asks an app to sync, as the Inngest server does (a ``PUT`` to its URL).

The worker that calls these functions is :mod:`pipeline.workers.http`.
"""
