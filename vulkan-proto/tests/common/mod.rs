//! Helpers shared by integration tests (and, through `#[path]`, by the fuzz targets).

pub mod harness;
