//! Every fused op against its composite candle version: values and gradients.
use super::*;
use candle_core::{Device, Var, D};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    super::max_abs_diff(a, b).unwrap()
}

fn composite_layer_norm(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let mean = x.mean_keepdim(D::Minus1).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let xhat = xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
    xhat.broadcast_mul(g).unwrap().broadcast_add(b).unwrap()
}

#[test]
fn layer_norm_matches_composite_values_and_gradients() {
    for dtype in [DType::F32, DType::F64] {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2., (3, 5, 24), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let g = Var::from_tensor(&Tensor::randn(1f32, 0.3, 24, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 24, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1., (3, 5, 24), &dev).unwrap().to_dtype(dtype).unwrap();
        let fused = layer_norm(&x, &g, &b, 1e-5).unwrap();
        let slow = composite_layer_norm(&x, &g, &b, 1e-5);
        assert!(max_diff(&fused, &slow) < 1e-5, "{dtype:?} values");
        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("gamma", &g), ("beta", &b)] {
            let d = max_diff(gf.get(v).unwrap(), gs.get(v).unwrap());
            assert!(d < 1e-4, "{dtype:?} d{name}: {d}");
        }
    }
}

#[test]
fn cross_entropy_matches_composite_values_and_gradients() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let z = Var::from_tensor(&Tensor::randn(0f32, 3., (7, 11), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let t = Tensor::new(&[0u32, 3, 10, 5, 5, 1, 9], &dev).unwrap();
        let w = Tensor::new(&[1f32, 0., 1., 1., 0.5, 1., 2.], &dev).unwrap().to_dtype(dtype).unwrap();
        let fused = cross_entropy(&z, &t).unwrap();
        let logp = candle_nn::ops::log_softmax(&z, D::Minus1).unwrap();
        let slow = logp.gather(&t.unsqueeze(1).unwrap(), 1).unwrap().squeeze(1).unwrap().neg().unwrap();
        assert!(max_diff(&fused, &slow) < 1e-5, "{dtype:?} values");
        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(gf.get(&z).unwrap(), gs.get(&z).unwrap()) < 1e-5, "{dtype:?} gradients");
    }
    // A wide row (full vectorized blocks and a tail) with large logits, against f64 math.
    let z = Var::from_tensor(&(Tensor::randn(0f32, 30., (5, 333), &dev).unwrap() + 500.0).unwrap()).unwrap();
    let t = Tensor::new(&[0u32, 332, 128, 7, 200], &dev).unwrap();
    let fused = cross_entropy(&z, &t).unwrap();
    let z64 = z.as_tensor().to_dtype(DType::F64).unwrap();
    let logp = candle_nn::ops::log_softmax(&z64, D::Minus1).unwrap();
    let exact = logp.gather(&t.unsqueeze(1).unwrap(), 1).unwrap().squeeze(1).unwrap().neg().unwrap();
    let d = max_diff(&fused.to_dtype(DType::F64).unwrap(), &exact);
    assert!(d < 1e-4, "wide values {d}");
    let onehot = Tensor::eye(333, DType::F64, &dev).unwrap().index_select(&t, 0).unwrap();
    let exact_grad = (logp.exp().unwrap() - onehot).unwrap();
    let grad = fused.sum_all().unwrap().backward().unwrap();
    let d = max_diff(&grad.get(&z).unwrap().to_dtype(DType::F64).unwrap(), &exact_grad);
    assert!(d < 1e-5, "wide gradients {d}");
    assert!(cross_entropy(&Tensor::zeros((2, 3), DType::F32, &dev).unwrap(), &Tensor::new(&[0u32, 3], &dev).unwrap()).is_err());
}

#[test]
fn dropout_is_seeded_scaled_and_differentiable() {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::ones((100, 1000), DType::F32, &dev).unwrap()).unwrap();
    let a = dropout(&x, 0.1, 42).unwrap();
    let b = dropout(&x, 0.1, 42).unwrap();
    let c = dropout(&x, 0.1, 43).unwrap();
    assert_eq!(max_diff(&a, &b), 0.0);
    assert!(max_diff(&a, &c) > 0.0);
    let v = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dropped = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
    assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
    assert!(v.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.9).abs() < 1e-6));
    // The gradient uses the same mask: d(sum a)/dx = a for x = 1.
    let g = a.sum_all().unwrap().backward().unwrap();
    assert_eq!(max_diff(g.get(&x).unwrap(), &a), 0.0);
}

#[test]
fn add_bias_matches_broadcast_add_values_and_gradients() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let y = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 70, 33), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1., 33, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1., (3, 70, 33), &dev).unwrap().to_dtype(dtype).unwrap();
        let fused = add_bias(&y, &b).unwrap();
        let slow = y.broadcast_add(&b).unwrap();
        assert!(max_diff(&fused, &slow) < 1e-6);
        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(gf.get(&y).unwrap(), gs.get(&y).unwrap()) < 1e-6);
        assert!(max_diff(gf.get(&b).unwrap(), gs.get(&b).unwrap()) < 1e-4);
    }
}

/// Random attention inputs: 2 batches × 3 heads of size 4, `s` queries, `t` keys, a random 0/1
/// mask (70% ones) and output weights `w` for a scalar loss.
struct AttentionInputs {
    q: Var,
    k: Var,
    v: Var,
    mask: Tensor,
    w: Tensor,
}

fn attention_inputs(dtype: DType, s: usize, t: usize) -> AttentionInputs {
    let dev = Device::Cpu;
    let r = |shape: (usize, usize, usize, usize)| {
        Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap()
    };
    AttentionInputs {
        q: r((2, 3, s, 4)),
        k: r((2, 3, t, 4)),
        v: r((2, 3, t, 4)),
        mask: Tensor::rand(0f32, 1., (2, 1, s, t), &dev).unwrap().ge(0.3).unwrap().to_dtype(dtype).unwrap(),
        w: Tensor::randn(0f32, 1., (2, 3, s, 4), &dev).unwrap().to_dtype(dtype).unwrap(),
    }
}

#[test]
fn fused_attention_matches_composite_values_and_gradients() {
    for (dtype, p, biased) in
        [(DType::F64, 0.0, false), (DType::F32, 0.0, false), (DType::F64, 0.3, false), (DType::F64, 0.0, true), (DType::F32, 0.2, true)]
    {
        let AttentionInputs { q, k, v, mask, w } = attention_inputs(dtype, 5, 7);
        // A per-key logit bias, different for the two batch rows.
        let bias = biased.then(|| Tensor::randn(0f32, 1., (2, 1, 1, 7), &Device::Cpu).unwrap().to_dtype(dtype).unwrap());
        let fused = attention(&q, &k, &v, &mask, bias.as_ref(), 0.5, p, 9).unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        // The softmax scales the scores by 0.5, so the bias goes in doubled.
        let scores = match &bias {
            Some(b) => scores.broadcast_add(&b.affine(2.0, 0.0).unwrap()).unwrap(),
            None => scores,
        };
        let probs = masked_softmax(&scores, &mask, 0.5).unwrap();
        let slow = dropout(&probs, p, 9).unwrap().matmul(&v).unwrap();
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-10 };
        assert!(max_diff(&fused, &slow) < tol, "{dtype:?} p={p} bias {biased} values {}", max_diff(&fused, &slow));
        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let d = max_diff(gf.get(x).unwrap(), gs.get(x).unwrap());
            assert!(d < tol * 10.0, "{dtype:?} p={p} bias {biased} d{name}: {d}");
        }
    }
}

#[test]
fn attention_backward_is_the_same_with_kept_or_recomputed_probabilities() {
    for (dtype, p) in [(DType::F32, 0.0), (DType::F32, 0.3), (DType::F64, 0.5)] {
        let AttentionInputs { q, k, v, mask, w } = attention_inputs(dtype, 9, 11);
        let kept = attention::attention_keeping(&q, &k, &v, &mask, None, 0.5, p, 4, usize::MAX).unwrap();
        let recomputed = attention::attention_keeping(&q, &k, &v, &mask, None, 0.5, p, 4, 0).unwrap();
        assert_eq!(max_diff(&kept, &recomputed), 0.0);
        let (gk, gr) = (grads_of(&kept, &w, &[&q, &k, &v]), grads_of(&recomputed, &w, &[&q, &k, &v]));
        for (name, (a, b)) in ["q", "k", "v"].iter().zip(gk.iter().zip(&gr)) {
            assert_eq!(max_diff(a, b), 0.0, "{dtype:?} p={p} d{name}");
        }
    }
}

#[test]
fn packed_attention_matches_split_heads() {
    let dev = Device::Cpu;
    for (dtype, p, biased) in [(DType::F64, 0.0, false), (DType::F64, 0.2, false), (DType::F32, 0.1, false), (DType::F64, 0.1, true)] {
        let (b, s, heads, d) = (2, 6, 3, 4);
        let h = heads * d;
        let qkv = Var::from_tensor(&Tensor::randn(0f32, 1., (b, s, 3 * h), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let mask = Tensor::rand(0f32, 1., (b, 1, s, s), &dev).unwrap().ge(0.3).unwrap().to_dtype(dtype).unwrap();
        let w = Tensor::randn(0f32, 1., (b, s, h), &dev).unwrap().to_dtype(dtype).unwrap();
        let bias = biased.then(|| Tensor::randn(0f32, 1., (1, 1, 1, s), &dev).unwrap().to_dtype(dtype).unwrap());
        let packed = attention_packed(&qkv, heads, &mask, bias.as_ref(), 0.5, p, 3).unwrap();
        let split =
            |i: usize| qkv.narrow(2, i * h, h).unwrap().reshape((b, s, heads, d)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let reference = attention(&split(0), &split(1), &split(2), &mask, bias.as_ref(), 0.5, p, 3)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, s, h))
            .unwrap();
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        assert!(max_diff(&packed, &reference) < tol);
        let gp = (packed * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (reference * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(gp.get(&qkv).unwrap(), gr.get(&qkv).unwrap()) < tol * 10.0);
    }
}

#[test]
fn linear_matches_composite_values_and_gradients() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let r = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let (x, w, b) = (r(&[3, 5, 7]), r(&[11, 7]), r(&[11]));
        let g = Tensor::randn(0f32, 1., (3, 5, 11), &dev).unwrap().to_dtype(dtype).unwrap();
        let fused = linear(&x, &w, &b).unwrap();
        let slow = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        assert!(max_diff(&fused, &slow) < 1e-5);
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (slow * &g).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
            let d = max_diff(gf.get(v).unwrap(), gs.get(v).unwrap());
            assert!(d < 1e-4, "{dtype:?} d{name}: {d}");
        }
    }
}

/// Gradients of `Σ out·g` with respect to each of `vars`.
fn grads_of(out: &Tensor, g: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let store = (out * g).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter().map(|v| store.get(v).expect("every input gets a gradient").clone()).collect()
}

#[test]
fn linear_gelu_and_linear_no_bias_match_their_composites() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let r = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        // 40 rows: the GEMM path; 3 rows: the few-rows path.
        for rows in [40, 3] {
            let (x, w, b) = (r(&[rows, 7]), r(&[19, 7]), r(&[19]));
            let g = Tensor::randn(0f32, 1., (rows, 19), &dev).unwrap().to_dtype(dtype).unwrap();
            for erf in [false, true] {
                let fused = linear_gelu(&x, &w, &b, erf).unwrap();
                let pre = linear(&x, &w, &b).unwrap();
                let slow = if erf { gelu_erf(&pre) } else { gelu_tanh(&pre) }.unwrap();
                // The same kernels in the same order: identical numbers.
                assert_eq!(max_diff(&fused, &slow), 0.0, "{dtype:?} erf={erf} values");
                let (gf, gs) = (grads_of(&fused, &g, &[&x, &w, &b]), grads_of(&slow, &g, &[&x, &w, &b]));
                for (name, (a, b)) in ["x", "w", "b"].iter().zip(gf.iter().zip(&gs)) {
                    assert!(max_diff(a, b) < 1e-5, "{dtype:?} erf={erf} d{name}");
                }
            }
            let fused = linear_no_bias(&x, &w).unwrap();
            let slow = x.matmul(&w.t().unwrap()).unwrap();
            assert!(max_diff(&fused, &slow) < 1e-5, "{dtype:?} no-bias values");
            let (gf, gs) = (grads_of(&fused, &g, &[&x, &w]), grads_of(&slow, &g, &[&x, &w]));
            assert!(max_diff(&gf[0], &gs[0]) < 1e-4 && max_diff(&gf[1], &gs[1]) < 1e-4, "{dtype:?} no-bias gradients");
        }
    }
    // Constants (no backward can follow) need no kept pre-activation and still compute.
    let c = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
    let y = linear_gelu(&c(&[30, 4]), &c(&[6, 4]), &c(&[6]), false).unwrap();
    assert_eq!(y.dims(), [30, 6]);
    assert!(linear_no_bias(&c(&[3, 4]), &c(&[6, 5])).is_err());
}

#[test]
fn residual_dropout_is_dropout_then_add() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let r = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1., shape, &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        // More elements than one rayon chunk, so the mask indices cross chunk boundaries.
        let (x, y) = (r(&[3, 50, 130]), r(&[3, 50, 130]));
        let g = Tensor::randn(0f32, 1., (3, 50, 130), &dev).unwrap().to_dtype(dtype).unwrap();
        for p in [0.0, 0.1, 0.5] {
            let fused = residual_dropout(&x, &y, p, 7).unwrap();
            let slow = (x.as_tensor() + dropout(&y, p, 7).unwrap()).unwrap();
            assert_eq!(max_diff(&fused, &slow), 0.0, "{dtype:?} p={p} values");
            let (gf, gs) = (grads_of(&fused, &g, &[&x, &y]), grads_of(&slow, &g, &[&x, &y]));
            assert_eq!(max_diff(&gf[0], &gs[0]), 0.0, "{dtype:?} p={p} dx");
            assert_eq!(max_diff(&gf[1], &gs[1]), 0.0, "{dtype:?} p={p} dy");
        }
    }
    let a = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    assert!(residual_dropout(&a, &a.t().unwrap(), 0.1, 1).is_err());
}

#[test]
fn gelu_matches_candle_values_and_gradients() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 2., (4, 33), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1., (4, 33), &dev).unwrap().to_dtype(dtype).unwrap();
        for (fused, slow) in [(gelu_tanh(&x).unwrap(), x.gelu().unwrap()), (gelu_erf(&x).unwrap(), x.gelu_erf().unwrap())] {
            assert!(max_diff(&fused, &slow) < 1e-5, "{dtype:?} values");
            let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gs = (slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
            assert!(max_diff(gf.get(&x).unwrap(), gs.get(&x).unwrap()) < 1e-4, "{dtype:?} gradients");
        }
    }
}

#[test]
fn masked_softmax_matches_composite_values_and_gradients() {
    let dev = Device::Cpu;
    let s = Var::from_tensor(&Tensor::randn(0f32, 3., (2, 3, 4, 6), &dev).unwrap()).unwrap();
    let mask =
        Tensor::new(&[[1f32, 1., 0., 0., 1., 0.], [1., 1., 1., 0., 0., 0.], [0., 0., 0., 0., 0., 0.], [1., 1., 1., 1., 1., 1.]], &dev)
            .unwrap()
            .reshape((1, 1, 4, 6))
            .unwrap();
    let w = Tensor::randn(0f32, 1., (2, 3, 4, 6), &dev).unwrap();
    let fused = masked_softmax(&s, &mask, 0.5).unwrap();
    let z = (s.affine(0.5, 0.).unwrap().broadcast_mul(&mask).unwrap()
        + mask.affine(65504., MASKED_SCORE).unwrap().broadcast_as(s.shape()).unwrap())
    .unwrap();
    let slow = candle_nn::ops::softmax(&z, D::Minus1).unwrap();
    assert!(max_diff(&fused, &slow) < 1e-6);
    // The fully masked row is uniform, not NaN.
    let row = fused.get(0).unwrap().get(0).unwrap().get(2).unwrap().to_vec1::<f32>().unwrap();
    assert!(row.iter().all(|p| (p - 1.0 / 6.0).abs() < 1e-6), "{row:?}");
    let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gs = (slow * &w).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(max_diff(gf.get(&s).unwrap(), gs.get(&s).unwrap()) < 1e-5);
}

#[test]
fn embedding_matches_index_select_values_and_gradients() {
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        // 200 columns: several column blocks in the backward; repeated ids accumulate.
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., (13, 200), &dev).unwrap().to_dtype(dtype).unwrap()).unwrap();
        let ids = Tensor::new(&[[3u32, 0, 12, 3], [7, 7, 7, 1]], &dev).unwrap();
        let r = Tensor::randn(0f32, 1., (2, 4, 200), &dev).unwrap().to_dtype(dtype).unwrap();
        let fused = embedding(&w, &ids).unwrap();
        let slow = w.index_select(&ids.flatten_all().unwrap(), 0).unwrap().reshape((2, 4, 200)).unwrap();
        assert_eq!(max_diff(&fused, &slow), 0.0, "{dtype:?} values");
        let gf = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(gf.get(&w).unwrap(), gs.get(&w).unwrap()) < 1e-6, "{dtype:?} gradients");
    }
    let table = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
    assert!(embedding(&table, &Tensor::new(&[4u32], &dev).unwrap()).is_err(), "an id past the table is an error");
}

/// Every fused op takes an empty batch (no rows) forward and backward on the CPU: empty outputs
/// of the right shapes and gradients of the inputs' shapes, not an error or a panic from a
/// reduction or a chunking over nothing.
#[test]
fn fused_ops_take_an_empty_batch() {
    type Case = (&'static str, Vec<usize>, Box<dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>>);
    let cpu = Device::Cpu;
    let mask = Tensor::ones((1, 1, 5, 5), DType::F32, &cpu).unwrap();
    let (m1, m2, m3) = (mask.clone(), mask.clone(), mask);
    let ids = Tensor::zeros((0, 3), DType::U32, &cpu).unwrap();
    let targets = Tensor::zeros(0, DType::U32, &cpu).unwrap();
    let cases: Vec<(Vec<Vec<usize>>, Case)> = vec![
        (vec![vec![0, 8], vec![8], vec![8]], ("layer_norm", vec![0, 8], Box::new(|x| layer_norm(&x[0], &x[1], &x[2], 1e-5)))),
        (vec![vec![0, 8]], ("cross_entropy", vec![0], Box::new(move |x| cross_entropy(&x[0], &targets)))),
        (vec![vec![0, 8], vec![6, 8], vec![6]], ("linear", vec![0, 6], Box::new(|x| linear(&x[0], &x[1], &x[2])))),
        (vec![vec![0, 8], vec![6, 8], vec![6]], ("linear_gelu", vec![0, 6], Box::new(|x| linear_gelu(&x[0], &x[1], &x[2], true)))),
        (vec![vec![0, 8], vec![6, 8]], ("linear_no_bias", vec![0, 6], Box::new(|x| linear_no_bias(&x[0], &x[1])))),
        (vec![vec![0, 8]], ("gelu_erf", vec![0, 8], Box::new(|x| gelu_erf(&x[0])))),
        (vec![vec![0, 8], vec![8]], ("add_bias", vec![0, 8], Box::new(|x| add_bias(&x[0], &x[1])))),
        (vec![vec![0, 8]], ("dropout", vec![0, 8], Box::new(|x| dropout(&x[0], 0.1, 3)))),
        (vec![vec![0, 8], vec![0, 8]], ("residual_dropout", vec![0, 8], Box::new(|x| residual_dropout(&x[0], &x[1], 0.1, 3)))),
        (vec![vec![0, 2, 5, 5]], ("masked_softmax", vec![0, 2, 5, 5], Box::new(move |x| masked_softmax(&x[0], &m1, 0.5)))),
        (
            vec![vec![0, 2, 5, 4]; 3],
            ("attention", vec![0, 2, 5, 4], Box::new(move |x| attention(&x[0], &x[1], &x[2], &m2, None, 0.5, 0.1, 1))),
        ),
        (vec![vec![0, 5, 24]], ("attention_packed", vec![0, 5, 8], Box::new(move |x| attention_packed(&x[0], 2, &m3, None, 0.5, 0.1, 1)))),
        (vec![vec![10, 8]], ("embedding", vec![0, 3, 8], Box::new(move |x| embedding(&x[0], &ids)))),
    ];
    for (shapes, (name, want, f)) in cases {
        let vars: Vec<Var> =
            shapes.iter().map(|s| Var::from_tensor(&Tensor::zeros(s.as_slice(), DType::F32, &cpu).unwrap()).unwrap()).collect();
        let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&xs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(y.dims(), want, "{name}");
        let grads = y.sum_all().unwrap().backward().unwrap_or_else(|e| panic!("{name} backward: {e}"));
        for x in &xs {
            let g = grads.get(x).unwrap_or_else(|| panic!("{name}: no gradient for an input of shape {:?}", x.dims()));
            assert_eq!(g.dims(), x.dims(), "{name}: gradient shape");
        }
    }
}

#[test]
fn max_abs_diff_sees_a_nan_anywhere() {
    let dev = Device::Cpu;
    let a = Tensor::new(&[1f32, 2.0, 3.0, 4.0], &dev).unwrap();
    for i in 0..4 {
        let mut v = vec![1f32, 2.0, 3.5, 4.0];
        v[i] = f32::NAN;
        let b = Tensor::new(v.as_slice(), &dev).unwrap();
        assert!(max_diff(&a, &b).is_nan(), "NaN at {i}");
        assert!(max_diff(&b, &a).is_nan(), "NaN at {i}, first argument");
    }
    let b = Tensor::new(&[1f32, 2.0, 3.5, 4.0], &dev).unwrap();
    assert_eq!(max_diff(&a, &b), 0.5);
    assert_eq!(max_diff(&a.to_dtype(DType::F16).unwrap(), &b), 0.5, "mixed dtypes compare as f64");
    assert!(super::max_abs_diff(&a, &a.reshape((2, 2)).unwrap()).is_err(), "shapes differ");
    let inf = Tensor::new(&[f32::INFINITY], &dev).unwrap();
    assert!(max_diff(&inf, &inf).is_nan(), "∞ − ∞ is no match");
}
