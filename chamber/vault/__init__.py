"""The vault: master key life cycle, ceremonies, rotations (SPEC §5, DESIGN §4)."""
