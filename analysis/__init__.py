"""Detectors, finding kinds, prompt building, the judge and the severity policy."""
