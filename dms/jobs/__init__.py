"""Job lifecycles on both sides (SP and CP), as explicit, persisted state machines."""
