//! Tests of the integer and data-movement instructions.
