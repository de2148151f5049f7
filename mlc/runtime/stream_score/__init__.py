"""Stream scoring: `python -m mlc.runtime stream-score --project P --endpoint E` consumes a
stream endpoint's input topic, scores each event with the endpoint's model and writes the
scored event to its output topic; offsets are committed only once the output is flushed
(docs/streams.md, "Stream scoring")."""
