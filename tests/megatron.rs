//! Original THUDM/GLM checkpoints (fp16, pickled `argparse.Namespace` beside the weights, and a
//! 2-way model-parallel split) load to the glm-tiny weights within fp16 rounding.

mod common;

use common::*;
use wenhui::model::checkpoint::{Checkpoint, CheckpointFormat};
use wenhui::model::{load_model, Attention, BackboneInput, Gelu, LoadOptions};

fn megatron_dir() -> std::path::PathBuf {
    fixture_dir("WENHUI_GLM_MEGATRON_FIXTURE", "glm-tiny-megatron")
}

fn check_weights(sub: &str, ranks: usize) {
    let ck = Checkpoint::read(&megatron_dir().join(sub)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ck.format, CheckpointFormat::Megatron(ranks));
    let reference = tensors(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("model.safetensors"));
    assert_eq!(ck.tensors.len(), reference.len(), "tensor count");
    for (name, want) in &reference {
        let got = ck.tensors.get(name).unwrap_or_else(|| panic!("{sub}: {name} missing"));
        assert_eq!(got.dtype(), candle_core::DType::F16, "{name} is stored as fp16");
        let got = got.to_dtype(candle_core::DType::F32).unwrap();
        assert_eq!(got.dims(), want.dims(), "{sub}: {name} shape");
        // |Δ| ≤ 1e-3·max(1, |w|): fp16 rounding.
        let bound = want.abs().unwrap().maximum(1f32).unwrap().affine(1e-3, 0.0).unwrap();
        let over = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .gt(&bound)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(candle_core::DType::U32)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        assert_eq!(over, 0, "{sub}: {name} differs beyond fp16 rounding");
    }
    let args = ck.megatron_args.expect("args namespace read");
    assert!(args.get("num_layers").is_some(), "args: {args}");
}

#[test]
fn mp1_loads_fp16_weights() {
    check_weights("mp1", 1);
}

#[test]
fn mp2_merges_to_the_same_weights() {
    check_weights("mp2", 2);
}

#[test]
fn megatron_checkpoint_runs_like_the_reference() {
    // No config.json beside the checkpoint: the config comes from the pickled args.
    let opts = LoadOptions { gelu: Some(Gelu::Tanh), ..Default::default() };
    let m = load_model(&megatron_dir().join("mp2"), &opts).unwrap_or_else(|e| panic!("{e}"));
    let t = tensors(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("cases.safetensors"));
    let input = BackboneInput::ids(u32s(&t["blank_infill.input_ids"]))
        .with_positions(u32s(&t["blank_infill.position_ids"]))
        .with_attention(Attention::Sep(usizes(&t["blank_infill.sep"])));
    let out = m.backbone.forward(&input, None).unwrap();
    assert_close("megatron logits", &out.logits, &t["blank_infill.logits_gelu_tanh"], 1e-2);
}

/// A model-parallel checkpoint with a rank's shard missing names the missing file, instead of
/// failing later on a tensor shape.
#[test]
fn a_missing_rank_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mp2");
    std::fs::create_dir_all(dir.join("release")).unwrap();
    let src = megatron_dir().join("mp2");
    std::fs::copy(src.join("latest_checkpointed_iteration.txt"), dir.join("latest_checkpointed_iteration.txt")).unwrap();
    std::fs::copy(src.join("release/mp_rank_00_model_states.pt"), dir.join("release/mp_rank_00_model_states.pt")).unwrap();
    let err = Checkpoint::read(&dir).err().expect("an error").to_string();
    assert!(err.contains("mp_rank_01_model_states.pt") && err.contains("missing"), "{err}");
    // The other way round: rank 01 alone.
    std::fs::remove_file(dir.join("release/mp_rank_00_model_states.pt")).unwrap();
    std::fs::copy(src.join("release/mp_rank_01_model_states.pt"), dir.join("release/mp_rank_01_model_states.pt")).unwrap();
    let err = Checkpoint::read(&dir).err().expect("an error").to_string();
    assert!(err.contains("mp_rank_00_model_states.pt") && err.contains("missing"), "{err}");
}
