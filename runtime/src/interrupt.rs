//! Interrupt delivery (placeholder).
