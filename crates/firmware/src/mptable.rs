//! The Intel MP table.
