"""Event hooks: durable, ordered, signed delivery of archived events to subscribers.

::

    dispatcher.py   per subscriber: cursor, queue, one event in flight per session, retries
    sink.py         what every kind of subscriber implements: deliver(event) -> Outcome
    webhook.py      Standard Webhooks POSTs, signed with every configured secret
    command.py      a program per event, with the event's JSON on standard input
    python.py       module:function targets and ``gws_archiver.hooks`` entry-point plugins
    retry.py        the wait before the next attempt

Delivery state lives in the archive (``archiver.store.deliveries``).
"""
