"""Replay: the request and reply formats, the worker's replay agent, the replay and tail clients.

- `formats`: request codec, reply headers, end marker, seq checksum (pure).
- `service` / `agent`: the worker side (Faust agent on kaizen.replay.requests).
- `client`: ask for a replay and read the reply; follow kaizen.events (aiokafka, no groups).
- `seam`: joining a replay and the live stream with no gap and no duplicate (pure).
"""
