"""The ground floor: settings, the exception tree, Kafka client arguments, the store client, processes.

Nothing in ``core`` imports ``schemas``, ``ingest``, ``consumers`` or ``callstream``.
"""
