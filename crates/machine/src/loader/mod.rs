//! Boot loaders: each puts an image into guest memory and the CPU into the state the image's
//! boot protocol promises, as a readable recipe with one error per step.

pub mod firmware;
pub mod linux;
pub mod multiboot;
