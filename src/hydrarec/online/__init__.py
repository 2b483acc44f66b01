"""Online hydrarec (issue 25): the durable event log that the service appends to and reads
each user's latest events from, and its export for retraining."""

from hydrarec.online.export import export_events
from hydrarec.online.store import Event, EventStore, EventStoreError, open_store

__all__ = ["Event", "EventStore", "EventStoreError", "export_events", "open_store"]
