"""Operations commands (promotion, nightly report, paper-vs-simulation, calibration)."""
