"""The process environment in-process handlers see, set before any handler is imported.

Lambda sets ``AWS_REGION`` and credentials before it imports a function's module; handlers
create boto3 clients at import time and botocore reads region, credentials and CA bundle when a
client is created. So this runs before the first import (``gateway.config.check_handlers``):

- each API's ``environment`` (in-process handlers share one process environment);
- ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` from the first API's ``region`` when not set;
- ``AWS_EC2_METADATA_DISABLED=true`` unless the user's environment (or an API's
  ``environment``) sets it, or the machine is an EC2 instance (``on_ec2``): without
  credentials botocore, and the SDK for JavaScript, would otherwise ask the EC2 instance
  metadata service at 169.254.169.254 — seconds of timeouts per client off EC2, and traffic
  off the loopback. On EC2 the instance role keeps working; ``false`` brings it back anywhere;
- placeholder credentials only when botocore finds none at all (handlers sign ``@connections``
  calls; locally any credentials do unless the config lists some); looked up after the line
  above, so the look-up itself does not wait on the metadata service;
- with ``certificate: auto``, ``AWS_CA_BUNDLE`` pointing at ``{state_dir}/tls/ca-bundle.pem``
  (written at start: the public CAs plus the development CA). A previous ``AWS_CA_BUNDLE`` is
  kept in ``SOCKWAY_UPSTREAM_CA_BUNDLE`` and included in that bundle.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path

UPSTREAM_CA_BUNDLE = "SOCKWAY_UPSTREAM_CA_BUNDLE"
PLACEHOLDER_CREDENTIAL = "sockway-local"
IMDS_DISABLED = "AWS_EC2_METADATA_DISABLED"
DMI = Path("/sys/devices/virtual/dmi/id")
XEN_UUID = Path("/sys/hypervisor/uuid")


def dev_ca_bundle_path(state_dir: Path) -> Path:
    return state_dir / "tls" / "ca-bundle.pem"


def apply_handler_environment(
    environments: Iterable[Mapping[str, str]], region: str, ca_bundle: Path | None
) -> None:
    env = os.environ
    for environment in environments:
        env.update(environment)
    env.setdefault("AWS_REGION", region)
    env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    metadata_default(env)
    if ca_bundle is not None:
        current = env.get("AWS_CA_BUNDLE")
        if current and current != str(ca_bundle):
            env.setdefault(UPSTREAM_CA_BUNDLE, current)
        env["AWS_CA_BUNDLE"] = str(ca_bundle)
    if not _has_aws_credentials():
        env["AWS_ACCESS_KEY_ID"] = PLACEHOLDER_CREDENTIAL
        env["AWS_SECRET_ACCESS_KEY"] = PLACEHOLDER_CREDENTIAL


def metadata_default(env: MutableMapping[str, str]) -> None:
    """``AWS_EC2_METADATA_DISABLED=true`` where it is not set and this is not EC2."""
    if IMDS_DISABLED not in env and not on_ec2(DMI, XEN_UUID):
        env[IMDS_DISABLED] = "true"


@functools.cache
def on_ec2(dmi: Path, xen_uuid: Path) -> bool:
    """Whether this machine is an EC2 instance, by what AWS's "Identify EC2 instances" page
    says to read, without a network call: the DMI vendor ``Amazon EC2`` (Nitro instances), or
    a Xen hypervisor UUID starting with ``ec2``."""
    for name in ("sys_vendor", "board_vendor"):
        try:
            if "Amazon EC2" in (dmi / name).read_text(errors="replace"):
                return True
        except OSError:
            pass
    try:
        return xen_uuid.read_text(errors="replace").lower().startswith("ec2")
    except OSError:
        return False


def _has_aws_credentials() -> bool:
    import botocore.session

    try:
        return botocore.session.get_session().get_credentials() is not None
    except Exception:  # a broken profile is the user's to fix; placeholders would hide it
        return True
