pub mod poetry;
