//! Text generation helpers built on top of the backbones.

pub mod poetry;
