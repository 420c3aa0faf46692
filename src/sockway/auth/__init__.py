"""Authorization: SigV4 verification and Lambda authorizer plumbing (pure logic)."""
