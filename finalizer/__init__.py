"""The dedicated finalization loop: shared pod watch, XCom reader, cleanup, ledger, triage, CLI."""
