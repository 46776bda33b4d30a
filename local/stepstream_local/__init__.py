"""The local stack: Stepstream's three functions in one process, no AWS account, no Docker.

``template.yaml`` is the single source of truth: the tables and queues are created
from it in an embedded moto server, the functions' environment comes from it, and
the handlers are imported from the ``CodeUri`` and ``Handler`` it names.
"""
