"""`sources.<name>.version`: the version of a file source's data that training reads."""


from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from .types import Spec


class DvcVersion(Spec):
    """A file tracked by DVC in a Git repository; the source's `path` is its path there."""

    repo: str = Field(min_length=1, pattern=r"^[^\s{}$]+$",
                      examples=["https://github.com/acme/data-registry.git"])
    """The Git repository: a URL, or a path relative to ml.yaml (development only)."""
    rev: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/@^~+-]+$",
                     examples=["v1.2.0"])
    """A Git revision: tag, branch or commit."""
    remote: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", examples=["storage"])
    """The DVC remote to fetch from; default: the repository's default remote."""


class LakeFsVersion(Spec):
    """An object in a lakeFS repository, read through lakeFS's S3 gateway."""

    endpoint: str = Field(pattern=r"^https?://[^\s{}$]+$",
                          examples=["http://lakefs.lakefs.svc:8000"])
    """lakeFS's URL: its S3 gateway and API."""
    repository: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$", examples=["analytics"])
    """The lakeFS repository."""
    ref: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._~^-]+$",
                     examples=["main", "c7a632d74f46"])
    """A branch, tag or commit id. The S3 gateway is read with the pod's S3 credentials, as
    any `s3://` file source (lakeFS access keys work as S3 keys)."""


class DataVersion(Spec):
    """Exactly one of `dvc`, `lakefs`, `objectVersion`."""

    dvc: DvcVersion | None = None
    """The file at `path` in a DVC repository, at `rev`."""
    lakefs: LakeFsVersion | None = None
    """The object at `path` in a lakeFS repository, at `ref`."""
    object_version: str | None = Field(None, min_length=1, max_length=1024,
                                       pattern=r"^[A-Za-z0-9._+/=-]+$",
                                       examples=["3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"])
    """The S3 `versionId` of the object at `path` (`s3://bucket/key`)."""

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.dvc, self.lakefs, self.object_version)) != 1:
            raise PydanticCustomError(
                "mlc_one_of", "a version is exactly one of `dvc`, `lakefs`, `objectVersion`",
                {})
        return self
