//! GLM against tensors dumped from the official THUDM/GLM code and the hub port
//! (`tests/fixtures/glm-tiny`, or the folder in `WENHUI_GLM_FIXTURE`): every case of
//! `cases.json`, both GELU variants, weights from safetensors and from `pytorch_model.bin`.

mod common;

use candle_core::{DType, Tensor, D};
use common::*;
use std::collections::HashMap;
use wenhui::model::{load_model, Attention, BackboneInput, Gelu, LoadOptions, LoadedModel};

const TOL: f32 = 1e-4;

fn dir() -> std::path::PathBuf {
    fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny")
}

fn load(weights: &str, gelu: Gelu) -> LoadedModel {
    let opts = LoadOptions { gelu: Some(gelu), ..Default::default() };
    load_model(&dir().join(weights), &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

/// Runs one forward case and compares logits and last hidden state.
fn check_forward_case(model: &LoadedModel, name: &str, case: &serde_json::Value, t: &HashMap<String, Tensor>, suffix: &str) -> Tensor {
    let get = |f: &str| t.get(&format!("{name}.{f}")).unwrap_or_else(|| panic!("{name}.{f} missing")).clone();
    let attention =
        if case["mask_form"] == "sep" { Attention::Sep(usizes(&get("sep"))) } else { Attention::Explicit(get("attention_mask_4d")) };
    let input = BackboneInput::ids(u32s(&get("input_ids"))).with_positions(u32s(&get("position_ids"))).with_attention(attention);
    let out = model.backbone.forward(&input, None).unwrap();
    assert_close(&format!("{name} logits{suffix}"), &out.logits, &get(&format!("logits{suffix}")), TOL);
    assert_close(&format!("{name} last_hidden_state{suffix}"), &out.hidden, &get(&format!("last_hidden_state{suffix}")), TOL);
    out.logits
}

/// Σ CE(logits, targets)·mask / Σ mask, as THUDM's pretrain loss.
fn masked_ce(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> f32 {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1).unwrap();
    let picked =
        logp.gather(&targets.to_dtype(DType::U32).unwrap().unsqueeze(D::Minus1).unwrap(), D::Minus1).unwrap().squeeze(D::Minus1).unwrap();
    let mask = mask.to_dtype(DType::F32).unwrap();
    let num = (picked * &mask).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    -num / mask.sum_all().unwrap().to_scalar::<f32>().unwrap()
}

fn run_all_cases(weights: &str) {
    let m = manifest();
    let t = tensors(&dir().join("cases.safetensors"));
    for (gelu, suffix) in [(Gelu::Erf, ""), (Gelu::Tanh, "_gelu_tanh")] {
        let model = load(weights, gelu);
        let mut checked = 0;
        for (name, case) in m["cases"].as_object().unwrap() {
            if name == "incremental_mems" {
                check_incremental(&model, &t, suffix);
                checked += 1;
                continue;
            }
            let logits = check_forward_case(&model, name, case, &t, suffix);
            let key = |f: &str| format!("{name}.{f}");
            if let (Some(targets), Some(mask)) = (t.get(&key("targets")), t.get(&key("loss_mask"))) {
                let want = t[&key(&format!("loss{suffix}"))].to_scalar::<f32>().unwrap();
                let got = masked_ce(&logits, targets, mask);
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{name} loss {got} vs {want}");
            }
            if let Some(labels) = t.get(&key("labels")) {
                let mask = labels.ge(0i64).unwrap();
                let safe = labels.clamp(0i64, i64::MAX).unwrap();
                let want = t[&key(&format!("loss{suffix}"))].to_scalar::<f32>().unwrap();
                let got = masked_ce(&logits, &safe, &mask);
                assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{name} loss {got} vs {want}");
            }
            if let Some(scores) = t.get(&key(&format!("choice_scores{suffix}"))) {
                let logp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), D::Minus1).unwrap();
                let want = scores.to_vec1::<f32>().unwrap();
                for (c, w) in want.iter().enumerate() {
                    let ids = usizes(&t[&key(&format!("choice_ids_{c}"))]);
                    let rows = usizes(&t[&key(&format!("choice_indices_{c}"))]);
                    let got: f32 =
                        ids.iter().zip(&rows).map(|(&id, &r)| logp.get(r).unwrap().get(id).unwrap().to_scalar::<f32>().unwrap()).sum();
                    assert!((got - w).abs() <= 1e-4 * w.abs().max(1.0), "{name} choice {c}: {got} vs {w}");
                }
            }
            checked += 1;
        }
        assert!(checked >= 7, "only {checked} cases found in cases.json");
    }
}

/// Context pass with the cache, then one token at a time: equals the single full pass.
fn check_incremental(model: &LoadedModel, t: &HashMap<String, Tensor>, suffix: &str) {
    let g = |f: &str| t[&format!("incremental_mems.{f}")].clone();
    let mut cache = model.backbone.new_cache();
    let sep = usizes(&g("context_sep"));
    let ctx =
        BackboneInput::ids(u32s(&g("context_ids"))).with_positions(u32s(&g("context_position_ids"))).with_attention(Attention::Sep(sep));
    model.backbone.forward(&ctx, Some(&mut cache)).unwrap();
    let steps = usizes(&g("step_ids"));
    let want = g(&format!("step_logits{suffix}"));
    for (k, &id) in steps.iter().enumerate() {
        let ids = Tensor::new(&[[id as u32]], &candle_core::Device::Cpu).unwrap();
        let pos = u32s(&g("step_position_ids").get(k).unwrap().unsqueeze(0).unwrap());
        let step = BackboneInput::ids(ids).with_positions(pos).with_attention(Attention::Sep(vec![0]));
        let out = model.backbone.forward(&step, Some(&mut cache)).unwrap();
        assert_close(
            &format!("incremental step {k}{suffix}"),
            &out.logits.squeeze(0).unwrap().squeeze(0).unwrap(),
            &want.get(k).unwrap(),
            TOL,
        );
    }
    assert_eq!(cache.len(), g("context_ids").dim(1).unwrap() + steps.len());
    if suffix.is_empty() {
        // The same steps against the full pass (erf logits are stored for it).
        let full = BackboneInput::ids(u32s(&g("full_input_ids")))
            .with_positions(u32s(&g("full_position_ids")))
            .with_attention(Attention::Sep(usizes(&g("full_sep"))));
        let out = model.backbone.forward(&full, None).unwrap();
        assert_close("incremental full pass", &out.logits, &g("full_logits"), TOL);
    }
}

#[test]
fn glm_matches_reference_from_safetensors() {
    run_all_cases("model.safetensors");
}

#[test]
fn glm_matches_reference_from_pytorch_bin() {
    run_all_cases("pytorch_model.bin");
}
