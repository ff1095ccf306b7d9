//! insert
