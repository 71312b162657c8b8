"""MQTT ingest: a persistent MQTT 5 subscriber, one handler per message kind, all writing to storage."""
