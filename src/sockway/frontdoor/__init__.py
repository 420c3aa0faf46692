"""What every front door implements and is given, and what the front doors share: the
contract (``contract``), the settings every API type has (``settings``), this node's membership of
the cluster (``cluster``) and SigV4 verification (``sigv4``). No front door is imported here."""
