"""Object storage plumbing shared by file sources and destinations.

fsspec lists, copies and deletes; Polars scans with its own object-store client.
:func:`polars_storage_options` translates the fsspec-style ``storage_options`` a user
writes (``key``, ``secret``, ``endpoint_url``, ``anon``, ``profile`` for S3;
``account_name``/``account_key`` for Azure; ``token`` for GCS) into the keys Polars
takes, and :func:`describe` turns storage exceptions (botocore's included, without
importing botocore) into one readable line.

Examples
--------
>>> polars_storage_options({"key": "AK", "secret": "SK", "endpoint_url": "http://127.0.0.1:9000"}, "s3://b/x")
{'aws_access_key_id': 'AK', 'aws_secret_access_key': 'SK', 'aws_endpoint_url': 'http://127.0.0.1:9000', 'aws_allow_http': 'true'}
>>> polars_storage_options({}, "s3://b/x") is None
True
>>> describe(FileNotFoundError("bkt/missing.csv"), "read s3://bkt/missing.csv")
'cannot read s3://bkt/missing.csv: not found (bkt/missing.csv)'
"""

from __future__ import annotations

from typing import Any

from conduit.errors import ConfigError

S3 = frozenset({"s3", "s3a"})
GCS = frozenset({"gs", "gcs"})
AZURE = frozenset({"az", "abfs", "abfss", "adl"})
BUCKETED = S3 | GCS | AZURE
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}

_S3_KEYS = {
    "key": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "token": "aws_session_token",
    "endpoint_url": "aws_endpoint_url",
    "region_name": "aws_region",
    "profile": "aws_profile",
}
_AZURE_KEYS = {
    "account_name": "azure_storage_account_name",
    "account_key": "azure_storage_account_key",
    "sas_token": "azure_storage_sas_key",
    "client_id": "azure_storage_client_id",
    "client_secret": "azure_storage_client_secret",
    "tenant_id": "azure_storage_tenant_id",
}
_GCS_KEYS = {"token": "google_service_account_path"}
# fsspec-only keys with no Polars meaning (block sizes, caching, listing behaviour)
_FSSPEC_ONLY = {
    "default_block_size",
    "default_fill_cache",
    "default_cache_type",
    "use_listings_cache",
    "listings_expiry_time",
    "max_paths",
    "skip_instance_cache",
    "config_kwargs",
    "s3_additional_kwargs",
    "requester_pays",
    "version_aware",
    "asynchronous",
    "loop",
    "project",
    "use_ssl",
    "cache_regions",
    "fixed_upload_size",
}


def is_url(path: str) -> bool:
    """Whether ``path`` names a remote fsspec location (``s3://...``) rather than a local file."""
    return "://" in path and not path.startswith("file://")


def protocol(url: str) -> str:
    """The scheme of ``url`` (``file`` for local paths)."""
    return url.split("://", 1)[0].lower() if is_url(url) else "file"


def filesystem(url: str, storage_options: dict[str, Any], where: str) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs`` with a clear error when the protocol's package is missing."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **storage_options)
    except ImportError:
        scheme = protocol(url)
        hint = f"pip install 'conduit-load[{EXTRAS[scheme]}]'" if scheme in EXTRAS else f"install the fsspec implementation for {scheme}://"
        msg = f"{where}: {scheme}:// paths need an extra package ({hint})"
        raise ConfigError(msg) from None
    except (ValueError, TypeError) as exc:
        msg = f"{where}: invalid storage_options for {protocol(url)}://: {' '.join(str(exc).split())}"
        raise ConfigError(msg) from None


def polars_storage_options(storage_options: dict[str, Any], url: str = "s3://") -> dict[str, str] | None:
    """fsspec-style ``storage_options`` translated to the object-store keys Polars takes.

    Keys Polars already understands (``aws_*``, ``azure_*``, ``google_*``) pass through;
    fsspec-only keys (block sizes, caching) are dropped. With nothing to pass, Polars
    reads the environment and the usual config files itself (returns None).
    """
    scheme = protocol(url)
    opts = dict(storage_options)
    client = opts.pop("client_kwargs", None) or {}
    for key in ("endpoint_url", "region_name"):
        if key in client:
            opts.setdefault(key, client[key])
    rename = _S3_KEYS if scheme in S3 else _AZURE_KEYS if scheme in AZURE else _GCS_KEYS if scheme in GCS else {}
    out: dict[str, str] = {}
    for key, value in opts.items():
        if key in _FSSPEC_ONLY or value is None:
            continue
        if key == "anon":
            if value:
                out[{"s3": "aws", "gs": "google", "az": "azure"}.get(_family(scheme), "aws") + "_skip_signature"] = "true"
            continue
        out[rename.get(key, key)] = str(value).lower() if isinstance(value, bool) else str(value)
    if out.get("aws_endpoint_url", "").startswith("http://"):
        out.setdefault("aws_allow_http", "true")
    return out or None


def _family(scheme: str) -> str:
    return "s3" if scheme in S3 else "gs" if scheme in GCS else "az" if scheme in AZURE else scheme


def bucket(url: str) -> str | None:
    """The bucket/container of an object-store URL (None for other filesystems)."""
    if protocol(url) not in BUCKETED:
        return None
    return url.split("://", 1)[1].split("/", 1)[0]


def describe(exc: BaseException, action: str) -> str:
    """One readable line for a storage failure: what failed, and the likely cause."""
    name = type(exc).__name__
    detail = " ".join(str(exc).split())[:300]
    if isinstance(exc, FileNotFoundError):
        cause = f"not found ({detail})" if detail else "not found"
    elif isinstance(exc, PermissionError) or (name == "ClientError" and any(w in detail for w in ("AccessDenied", "Forbidden", "403"))):
        cause = f"access denied: check the credentials (storage_options key/secret, AWS_* variables or profile) and the bucket policy ({detail})"
    elif name in {"NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError"}:
        cause = "no credentials found: set storage_options key and secret, the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables, or a profile"
    elif any(w in detail for w in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken")):
        cause = f"credentials rejected: {detail}"
    elif name in {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionRefusedError"} or "Could not connect" in detail:
        cause = f"cannot connect to the storage endpoint: {detail}"
    else:
        cause = f"{detail or name}"
    return f"cannot {action}: {cause}"
