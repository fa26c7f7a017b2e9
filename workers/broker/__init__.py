"""The embedded Kafka-protocol broker (tansu) and topic administration."""
