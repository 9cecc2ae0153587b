"""The contract between services: everything that crosses a topic is built and parsed here.

Ids, record keys, join rules, commands, invocations, outcomes, system events and the error payload.
Services import this package and never each other, so a record has one definition that both its writer
and its reader use. Pure: no Kafka client, no I/O.
"""
