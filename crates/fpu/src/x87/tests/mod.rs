//! Tests of the x87 unit: every instruction family against the host CPU's x87 with random
//! control words and operands (special values included), plus exact vectors for the parts
//! the host cannot check directly (state images, tags, faults).

mod host;
mod state;
mod units;
