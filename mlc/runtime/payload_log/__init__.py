"""The prediction log of an endpoint served by another engine (`python -m mlc.runtime
payload-log`): KServe's payload logger posts each request and each response of the
predictor to this receiver as a CloudEvent; the receiver pairs them by event id, decodes
the engine's protocol into the model's input rows and its prediction, and writes them
through mlc's own prediction log writer (mlc/runtime/prediction_log.py), so that drift
checks and quality monitors read an engine's log exactly as they read mlc's server's.

    cloudevents.py  a CloudEvent in HTTP binary mode, as KServe's agent sends it
    decode.py       V2 (Open Inference Protocol) and V1 bodies -> rows and predictions
    pairing.py      request and response by id, bounded in count and in time
    receiver.py     the HTTP server, its counters and its `main`

docs/serving-engines.md, "Prediction logging", says what the compiler deploys around it.
"""
