"""`python -m mlc.runtime ingest`: a Kafka source's consumer, writing each message to the
online store of the feature views it feeds (the generated ingestion Deployment runs it).

    config.py    librdkafka's settings: the IR's connection plus the pod's secrets
    messages.py  a message -> the rows of each view, or why it is not one
    loop.py      consume a batch, write it, commit: at least once, with metrics and lag
    command.py   the process: arguments, the Kafka client, Feast, the metrics server, SIGTERM
"""
