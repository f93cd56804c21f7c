"""Parity harness: ddlight against the authors' code, from one identical state.

Each module here (``dm``, ``datadam``, ``dc``, ...) holds one method's comparison. It imports the
authors' code from a checkout the user names (:mod:`benchmarks.parity.official`: the source is patched in
memory for a CPU, nothing of it is copied into this repository), runs both implementations from the same
images, weights, real batch and augmentation draw, prints the largest differences, and writes the inputs
with the authors' outputs as a small fixture (:mod:`benchmarks.parity.fixtures`) that
``tests/parity/`` re-checks on every commit without their code.

    python -m benchmarks.parity <method> --official PATH [--out tests/fixtures/parity]
"""
