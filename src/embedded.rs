//! The embedded default model: a small poetry GLM pretrained by wenhui (`models/poetry-glm`).

use std::path::PathBuf;

use crate::{Error, Result};

/// The directory of the embedded poetry GLM.
pub fn poetry_model_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/poetry-glm");
    if dir.join("config.json").is_file() {
        Ok(dir)
    } else {
        Err(Error::input(format!("the embedded poetry model is missing ({}); pass --model DIR", dir.display())))
    }
}
