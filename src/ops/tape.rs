//! A tape of fused ops, so that many ops can stand in candle's graph as one node (the GLM layer
//! stack, `model::stack`).
//!
//! candle's backward adds every gradient it receives into a fresh zero buffer of the input's size
//! (`GradStore::or_insert`), even the many gradients that arrive only once: on a GPU that was 296
//! full-size adds, their memsets and 164 f32 adds per GLM-Base step (about 24 of 135 ms, H200
//! profile, 2026-11-28). While a tape records on this thread, every fused op in `ops` runs on its
//! (detached) inputs without a candle node and is written down here instead; [`Tape::backward`]
//! then calls the same ops' own `bwd` in reverse order and keeps the first gradient of a tensor as
//! it comes, adding only where a tensor really has two consumers (the residual stream).
//!
//! An op whose input the tape did not make (a candle op slipped in between) fails with an error
//! naming the op, instead of silently cutting the gradient.

use candle_core::{CustomOp1, CustomOp2, CustomOp3, Result, Tensor, TensorId};
use std::cell::RefCell;
use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, HashSet};

/// An op's backward: (its inputs, its output, the output's gradient) → one gradient per input.
type Backward = Box<dyn Fn(&[Tensor], &Tensor, &Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// One recorded op application.
struct Entry {
    inputs: Vec<Tensor>,
    out: Tensor,
    backward: Backward,
}

/// The ops recorded by [`Tape::record`], in the order they ran.
#[derive(Default)]
pub(crate) struct Tape {
    entries: Vec<Entry>,
    /// Leaves and every recorded output: what a recorded op may take as input.
    known: HashSet<TensorId>,
    /// Leaves and how many recorded ops read each (to know when a leaf's gradient is complete).
    leaf_uses: HashMap<TensorId, usize>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Tape>> = const { RefCell::new(None) };
}

/// Whether a tape records on this thread: fused ops then keep what their backward needs even
/// though their (detached) inputs record no gradient.
pub(crate) fn recording() -> bool {
    ACTIVE.with(|a| a.borrow().is_some())
}

/// Takes the active tape off the thread when dropped, also when the recorded closure panics.
struct Recording;

impl Drop for Recording {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.borrow_mut().take());
    }
}

impl Tape {
    /// Runs `f` with a fresh tape recording on this thread, and returns its result with the tape.
    /// `leaves` are the (detached) inputs the recorded ops start from and whose gradients
    /// [`Tape::backward`] hands out.
    pub(crate) fn record<R, E: From<candle_core::Error>>(
        leaves: &[&Tensor],
        f: impl FnOnce() -> std::result::Result<R, E>,
    ) -> std::result::Result<(R, Tape), E> {
        if recording() {
            return Err(candle_core::Error::Msg("layer tape: a recording is already active on this thread".into()).into());
        }
        let mut tape = Tape::default();
        for l in leaves {
            tape.known.insert(l.id());
            tape.leaf_uses.insert(l.id(), 0);
        }
        ACTIVE.with(|a| *a.borrow_mut() = Some(tape));
        let guard = Recording;
        let out = f();
        let tape = ACTIVE.with(|a| a.borrow_mut().take()).unwrap_or_default();
        drop(guard);
        Ok((out?, tape))
    }

    /// Number of recorded ops.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Back-propagates `grad` (the gradient of the recorded output `out`) through the tape.
    /// Each leaf's gradient goes to `leaf_done` as soon as the last op reading it is done (so a
    /// caller can copy it out and free the buffer it is a view of); a leaf no gradient reached
    /// gets no call. Consumes the tape: activations are freed as the pass goes.
    pub(crate) fn backward(mut self, out: &Tensor, grad: Tensor, mut leaf_done: impl FnMut(TensorId, Tensor) -> Result<()>) -> Result<()> {
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(out.id(), grad);
        while let Some(e) = self.entries.pop() {
            // An output nothing downstream used has no gradient: its op adds nothing.
            let input_grads = match grads.remove(&e.out.id()) {
                Some(g) => (e.backward)(&e.inputs, &e.out, &g)?,
                None => vec![None; e.inputs.len()],
            };
            for (x, gx) in e.inputs.iter().zip(input_grads) {
                if x.elem_count() == 0 {
                    continue;
                }
                if let Some(gx) = gx {
                    match grads.entry(x.id()) {
                        Slot::Occupied(mut s) => {
                            let sum = (s.get() + &gx)?;
                            s.insert(sum);
                        }
                        Slot::Vacant(s) => {
                            s.insert(gx);
                        }
                    }
                }
                if let Some(uses) = self.leaf_uses.get_mut(&x.id()) {
                    *uses -= 1;
                    if *uses == 0 {
                        if let Some(g) = grads.remove(&x.id()) {
                            leaf_done(x.id(), g)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `t` is the output of a recorded op (what [`Tape::backward`] can start from).
    pub(crate) fn recorded_output(&self, t: &Tensor) -> bool {
        self.known.contains(&t.id()) && !self.leaf_uses.contains_key(&t.id())
    }

    /// Writes down one op application (inputs already checked).
    fn push(&mut self, inputs: Vec<Tensor>, out: &Tensor, backward: Backward) {
        // Zero-size inputs carry no gradient and are skipped by `backward`, so they are not counted.
        for x in inputs.iter().filter(|x| x.elem_count() > 0) {
            if let Some(uses) = self.leaf_uses.get_mut(&x.id()) {
                *uses += 1;
            }
        }
        self.known.insert(out.id());
        self.entries.push(Entry { inputs, out: out.clone(), backward });
    }

    /// An error unless every (non-empty) input is a leaf or a recorded output.
    fn check(&self, inputs: &[&Tensor], op: &str) -> Result<()> {
        match inputs.iter().position(|x| x.elem_count() > 0 && !self.known.contains(&x.id())) {
            Some(i) => candle_core::bail!(
                "layer tape: input {i} of {op} was not made by a recorded op (a candle op inside the recorded layers \
                 would cut their gradient); this is a bug in wenhui, run with WENHUI_LAYER_STACK=0 to avoid it"
            ),
            None => Ok(()),
        }
    }
}

/// Checks `inputs` against the active tape, runs the op with `run` and writes it down.
fn recorded(inputs: &[&Tensor], name: &str, run: impl FnOnce() -> Result<Tensor>, backward: Backward) -> Result<Tensor> {
    ACTIVE.with(|a| a.borrow().as_ref().map_or(Ok(()), |t| t.check(inputs, name)))?;
    let out = run()?;
    ACTIVE.with(|a| {
        if let Some(t) = a.borrow_mut().as_mut() {
            t.push(inputs.iter().map(|&x| x.clone()).collect(), &out, backward);
        }
    });
    Ok(out)
}

/// `x.apply_op1(op)`, or recorded on the active tape.
pub(crate) fn apply_op1<C: CustomOp1 + Send + Sync + 'static>(x: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return x.apply_op1(op);
    }
    let op = std::sync::Arc::new(op);
    let run = op.clone();
    recorded(&[x], op.name(), || x.apply_op1_no_bwd(&*run), Box::new(move |i, o, g| Ok(vec![op.bwd(&i[0], o, g)?])))
}

/// `a.apply_op2(b, op)`, or recorded on the active tape.
pub(crate) fn apply_op2<C: CustomOp2 + Send + Sync + 'static>(a: &Tensor, b: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return a.apply_op2(b, op);
    }
    let op = std::sync::Arc::new(op);
    let run = op.clone();
    let backward: Backward = Box::new(move |i, o, g| {
        let (da, db) = op.bwd(&i[0], &i[1], o, g)?;
        Ok(vec![da, db])
    });
    recorded(&[a, b], run.name(), || a.apply_op2_no_bwd(b, &*run), backward)
}

/// `a.apply_op3(b, c, op)`, or recorded on the active tape.
pub(crate) fn apply_op3<C: CustomOp3 + Send + Sync + 'static>(a: &Tensor, b: &Tensor, c: &Tensor, op: C) -> Result<Tensor> {
    if !recording() {
        return a.apply_op3(b, c, op);
    }
    let op = std::sync::Arc::new(op);
    let run = op.clone();
    let backward: Backward = Box::new(move |i, o, g| {
        let (da, db, dc) = op.bwd(&i[0], &i[1], &i[2], o, g)?;
        Ok(vec![da, db, dc])
    });
    recorded(&[a, b, c], run.name(), || a.apply_op3_no_bwd(b, c, &*run), backward)
}
