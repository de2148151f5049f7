"""`vectorStores` (the Milvus connections), a feature view's `vectorStore` (the collection
its embeddings are written to by the materialisation pipeline's vectors step) and a batch
endpoint's `batch.vectorStore` (the collection its model's output vectors are written to by
the scoring pipeline's vectors step).

The token is a secret by reference only (`tokenSecret` names an entry under `secrets:`).
Names, index parameters and the primary key are checked against Milvus' rules in
mlc/compiler/resolve/vectors.py, where the view's fields (or the endpoint's model and input
columns) are known.
"""


from typing import Literal

from pydantic import Field

from .types import FieldName, Name, Spec


class VectorStore(Spec):
    """A Milvus server (or, in development, a milvus-lite database file)."""

    type: Literal["milvus"] = "milvus"
    """The vector database."""
    uri: str = Field(min_length=1, max_length=500, pattern=r"^(https?://[^\s/]+\S*|[^\s:]+\.db)$",
                     examples=["http://milvus.milvus.svc:19530"],
                     description="`http(s)://host:port` of the Milvus server, or a path ending "
                     "in `.db` for a milvus-lite file (development only).")
    token_secret: Name | None = None
    """Secret (under `secrets:`) holding the token (`user:password` or an API key)."""
    database: str = Field("default", min_length=1, max_length=255,
                          description="Milvus database the collections live in.")


class VectorIndex(Spec):
    type: Literal["AUTOINDEX", "FLAT", "HNSW", "IVF_FLAT"] = "AUTOINDEX"
    """Milvus index type of the vector field."""
    params: dict[str, int] = Field(default_factory=dict, examples=[{"M": 16,
                                   "efConstruction": 200}],
                                   description="Build parameters of the index: `M` and "
                                   "`efConstruction` for HNSW, `nlist` for IVF_FLAT.")


class ViewVectorStore(Spec):
    """Where the view's embeddings are written: one entity per row, keyed by the join key."""

    store: Name
    """Vector store (under `vectorStores:`)."""
    collection: str | None = Field(None, min_length=1, max_length=255,
                                   description="Milvus collection; defaults to the view's name.")
    vector_field: FieldName
    """Column of the view's source holding the embedding (a list of floats)."""
    dimension: int = Field(ge=2, le=32768, description="Length of every embedding.")
    metric: Literal["L2", "IP", "COSINE"] = "COSINE"
    """Distance the index and searches use."""
    index: VectorIndex = Field(default_factory=VectorIndex)
    """How the vector field is indexed."""
    scalar_fields: list[FieldName] = Field(default_factory=list)
    """Fields of the view stored beside each vector, for filtered searches."""
    batch_size: int = Field(1000, ge=1, le=10000)
    """Rows upserted in one request."""


class ScoreVectorStore(Spec):
    """Where a batch endpoint's model outputs go: one entity per scored row, keyed by `key`."""

    store: Name
    """Vector store (under `vectorStores:`)."""
    collection: str | None = Field(None, min_length=1, max_length=255,
                                   description="Milvus collection; defaults to the endpoint's "
                                   "name.")
    key: FieldName | None = Field(None, description="Column of the input rows that keys each "
                                  "vector (the collection's primary key, int64 or string); "
                                  "defaults to the model's entity key when it has one.")
    vector_field: FieldName = Field("embedding", description="Name of the model's output "
                                    "vector, in the collection and in the published scores.")
    dimension: int = Field(ge=2, le=32768, description="Length of every output vector; the "
                           "scoring step checks it against the model's output.")
    metric: Literal["L2", "IP", "COSINE"] = "COSINE"
    """Distance the index and searches use."""
    index: VectorIndex = Field(default_factory=VectorIndex)
    """How the vector field is indexed."""
    scalar_fields: list[FieldName] = Field(default_factory=list)
    """Columns of the input rows stored beside each vector, for filtered searches."""
    batch_size: int = Field(1000, ge=1, le=10000)
    """Rows upserted in one request."""
