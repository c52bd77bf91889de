//! Training-correct numerics: every trainable parameter of every backbone receives a non-zero
//! gradient (guards against candle's fused ops that record no backward), and GLM's analytic
//! gradients agree with central finite differences in f64.

mod common;

use candle_core::{DType, Device, Tensor, Var, D};
use common::*;
use wenhui::model::{Attention, BackboneInput, Gelu, ModelConfig};

fn loss_of(logits: &Tensor) -> Tensor {
    // A loss that touches every logit with a different weight.
    let n = logits.elem_count();
    let w = Tensor::arange(0f32, n as f32, logits.device()).unwrap().affine(0.37, 0.0).unwrap().sin().unwrap();
    let w = w.to_dtype(logits.dtype()).unwrap().reshape(logits.shape()).unwrap();
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1).unwrap();
    (logp * w).unwrap().sum_all().unwrap()
}

fn assert_all_params_get_gradients(dir_var: &str, dir: &str, input: impl Fn(usize) -> BackboneInput) {
    let path = fixture_dir(dir_var, dir);
    let cfg = ModelConfig::from_file(&path.join("config.json")).unwrap();
    let weights = tensors(&path.join("model.safetensors"));
    let (varmap, model) = cfg.build_trainable(Some(weights), DType::F32, &Device::Cpu).unwrap();
    let out = model.forward(&input(model.info().vocab_size), None).unwrap();
    let grads = loss_of(&out.logits).backward().unwrap();
    let vars = varmap.all_vars();
    assert_eq!(vars.len(), cfg.parameter_shapes().len(), "every parameter is a Var");
    let data = varmap.data().lock().unwrap();
    for (name, var) in data.iter() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{dir}: {name} got no gradient"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{dir}: {name} gradient norm {norm}");
    }
}

fn ids(rows: &[&[u32]]) -> Tensor {
    Tensor::new(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), &Device::Cpu).unwrap()
}

#[test]
fn glm_every_parameter_gets_a_gradient() {
    assert_all_params_get_gradients("WENHUI_GLM_FIXTURE", "glm-tiny", |_| {
        let pos = Tensor::new(&[[[0u32, 1, 2, 3, 4, 2, 2, 2], [0, 0, 0, 0, 0, 1, 2, 3]]], &Device::Cpu).unwrap();
        BackboneInput::ids(ids(&[&[103, 5, 104, 7, 100, 101, 9, 10]])).with_positions(pos).with_attention(Attention::Sep(vec![5]))
    });
}

#[test]
fn glm_every_parameter_gets_a_gradient_in_training_mode() {
    // Dropout on, logits only for Part B rows: the pretraining path.
    assert_all_params_get_gradients("WENHUI_GLM_FIXTURE", "glm-tiny", |_| {
        let pos = Tensor::new(&[[[0u32, 1, 2, 3, 4, 2, 2, 2], [0, 0, 0, 0, 0, 1, 2, 3]]], &Device::Cpu).unwrap();
        BackboneInput::ids(ids(&[&[103, 5, 104, 7, 100, 101, 9, 10]]))
            .with_positions(pos)
            .with_attention(Attention::Sep(vec![5]))
            .with_dropout(7)
            .with_logit_rows(Tensor::new(&[5u32, 6, 7], &Device::Cpu).unwrap())
    });
}

#[test]
fn gpt2_every_parameter_gets_a_gradient() {
    assert_all_params_get_gradients("WENHUI_GPT2_FIXTURE", "gpt2-tiny", |_| {
        BackboneInput::ids(ids(&[&[5, 6, 7, 8, 9], &[10, 11, 12, 13, 14]]))
    });
}

#[test]
fn bert_every_parameter_gets_a_gradient() {
    assert_all_params_get_gradients("WENHUI_BERT_FIXTURE", "bert-mlm-tiny", |_| {
        BackboneInput::ids(ids(&[&[100, 5, 102, 7, 101, 8, 101]])).with_token_types(ids(&[&[0, 0, 0, 0, 0, 1, 1]]))
    });
}

#[test]
fn glm_gradients_match_finite_differences_in_f64() {
    let mut cfg = wenhui::model::glm::GlmConfig::new(2, 16, 2, 23, 12);
    cfg.gelu = Gelu::Erf;
    let cfg = ModelConfig::Glm(cfg);
    let (varmap, model) = cfg.build_trainable(None, DType::F64, &Device::Cpu).unwrap();
    // Larger random weights than the 0.02 init so every path contributes visibly.
    for v in varmap.all_vars() {
        let t = v.as_tensor();
        let scale = if t.rank() == 1 { 0.3 } else { 0.4 };
        v.set(&(t.randn_like(0.0, scale).unwrap() + if t.rank() == 1 { 0.1 } else { 0.0 }).unwrap()).unwrap();
    }
    let pos = Tensor::new(&[[[0u32, 1, 2, 3, 4, 2, 2, 2], [0, 0, 0, 0, 0, 1, 2, 3]]], &Device::Cpu).unwrap();
    let input = BackboneInput::ids(ids(&[&[3, 5, 20, 7, 1, 21, 9, 10]])).with_positions(pos).with_attention(Attention::Sep(vec![5]));
    let loss = |m: &dyn wenhui::model::Backbone| loss_of(&m.forward(&input, None).unwrap().logits);
    let grads = loss(model.as_ref()).backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let eps = 1e-6;
    let mut checked = 0;
    for name in names {
        let var: &Var = &data[name];
        let analytic = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        // The three entries with the largest analytic gradient: the ones that matter.
        let mut order: Vec<usize> = (0..base.len()).collect();
        order.sort_by(|&a, &b| analytic[b].abs().total_cmp(&analytic[a].abs()));
        for &i in order.iter().take(3) {
            let eval = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.as_tensor().shape(), &Device::Cpu).unwrap()).unwrap();
                loss(model.as_ref()).to_scalar::<f64>().unwrap()
            };
            let numeric = (eval(eps) - eval(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.as_tensor().shape(), &Device::Cpu).unwrap()).unwrap();
            let rel = (numeric - analytic[i]).abs() / analytic[i].abs().max(1e-6);
            assert!(rel <= 1e-3, "{name}[{i}]: analytic {} vs numeric {numeric} (rel {rel:e})", analytic[i]);
            checked += 1;
        }
    }
    assert!(checked >= 3 * 20, "checked {checked} entries");
}
