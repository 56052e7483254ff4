//! Running LongNet on a backend: prefill a batch of prompts (one length), then decode token by
//! token over the KV caches.

use tessel_package::DType;

use super::model::{LongNet, Names};
use crate::backend::Backend;
use crate::batch::{self, fingerprint};
use crate::graph::{Graph, Plan};
use crate::transnormer::Logits;
use crate::ModelError;

/// A batch of sequences in flight, with KV caches of `capacity` positions.
pub struct LongNetSession<'a> {
    pub model: &'a LongNet,
    be: &'a mut dyn Backend,
    batch: usize,
    capacity: usize,
    length: usize,
    decode: Option<(Graph, Plan, String)>,
}

impl<'a> LongNetSession<'a> {
    /// `capacity`: the most tokens (prompt and generated) a sequence may reach.
    pub fn new(
        model: &'a LongNet,
        be: &'a mut dyn Backend,
        batch: usize,
        capacity: usize,
    ) -> Result<Self, ModelError> {
        if batch == 0 || capacity == 0 {
            return Err(ModelError::Input(format!(
                "a batch of {batch} sequences with room for {capacity} tokens"
            )));
        }
        model.batch_buffers(be, batch, capacity)?;
        Ok(Self {
            model,
            be,
            batch,
            capacity,
            length: 0,
            decode: None,
        })
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.be
    }

    /// Tokens consumed so far (every sequence has the same count).
    pub fn length(&self) -> usize {
        self.length
    }

    /// Runs the prompts through the model and fills the KV caches. Dilated attention's segments
    /// are counted from each sequence's first token, so padding would move them: a batch's
    /// prompts must have one length.
    pub fn prefill(&mut self, prompts: &[Vec<u32>], logits: Logits) -> Result<Plan, ModelError> {
        let (b, cfg) = (self.batch, &self.model.cfg);
        if prompts.len() != b {
            return Err(ModelError::Input(format!(
                "{} prompts for a batch of {b}",
                prompts.len()
            )));
        }
        let n = prompts[0].len();
        if n == 0 {
            return Err(ModelError::Input("the prompt is empty".into()));
        }
        if let Some(i) = prompts.iter().position(|p| p.len() != n) {
            return Err(ModelError::Input(format!(
                "prompt {i} has {} tokens, prompt 0 has {n}: LongNet's segments start at each \
                 sequence's first token, so a batch is not padded; give its prompts one length",
                prompts[i].len()
            )));
        }
        if n > self.capacity {
            return Err(ModelError::Input(format!(
                "a prompt of {n} tokens in a KV cache of {}",
                self.capacity
            )));
        }
        if let Some(t) = prompts.iter().flatten().find(|t| **t as usize >= cfg.vocab) {
            return Err(ModelError::Input(format!(
                "token id {t} is outside the vocabulary of {}",
                cfg.vocab
            )));
        }
        let ids: Vec<f64> = prompts.iter().flatten().map(|t| *t as f64).collect();
        let prompt = Names::prompt(b, n);
        self.be.persistent(&prompt, DType::I32, b * n)?;
        self.be.write(&prompt, &ids)?;
        if logits == Logits::All {
            self.be
                .persistent(&Names::all_logits(b, n), DType::F32, b * n * cfg.vocab)?;
        }
        let graph = self.model.prefill_graph(b, n, self.capacity, logits);
        if let Some(t) = graph
            .transients
            .iter()
            .find(|t| t.numel > i32::MAX as usize)
        {
            return Err(ModelError::Input(format!(
                "a prefill of {b} × {n} tokens needs `{}` of {} elements, beyond the kernels' \
                 32-bit indexing: prefill fewer sequences at once",
                t.name, t.numel
            )));
        }
        let plan = graph.plan();
        // Sampling keys its draws on the last prompt position (pos + n − 1, pos = 0 here).
        self.be.write(&Names::pos(b), &vec![0.0; b])?;
        self.be.run(&graph, &plan)?;
        self.length = n;
        self.be.write(&Names::pos(b), &vec![n as f64; b])?;
        Ok(plan)
    }

    /// Logits of every position after a [`Logits::All`] prefill of length n: [b][n][vocab].
    pub fn all_logits(&mut self, n: usize) -> Result<Vec<Vec<Vec<f64>>>, ModelError> {
        batch::all_logits(self.be, self.batch, n, self.model.cfg.vocab)
    }

    /// The logits of the last token consumed, per sequence.
    pub fn logits(&mut self) -> Result<Vec<Vec<f64>>, ModelError> {
        batch::logits(self.be, self.batch, self.model.cfg.vocab)
    }

    pub fn next_tokens(&mut self) -> Result<Vec<u32>, ModelError> {
        batch::next_tokens(self.be, self.batch)
    }

    /// Makes the next step consume `tokens` instead of the model's choices.
    pub fn set_next_tokens(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        batch::set_next_tokens(self.be, self.batch, self.model.cfg.vocab, tokens)
    }

    /// One decode step: consumes the next tokens, returns the choices after them.
    pub fn step(&mut self) -> Result<Vec<u32>, ModelError> {
        if self.length == 0 {
            return Err(ModelError::Input("decode before prefill".into()));
        }
        if self.length >= self.capacity {
            return Err(ModelError::Input(format!(
                "the KV cache holds {} tokens and is full",
                self.capacity
            )));
        }
        let (b, cap) = (self.batch, self.capacity);
        let (graph, plan, key) = self.decode.get_or_insert_with(|| {
            let g = self.model.decode_graph(b, cap);
            let p = g.plan();
            let key = format!("longnet.decode.b{b}.c{cap}.{}", fingerprint(&g, &p));
            (g, p, key)
        });
        self.be.run_repeated(key, graph, plan)?;
        self.length += 1;
        self.next_tokens()
    }

    pub fn decode_plan(&self) -> Option<&Plan> {
        self.decode.as_ref().map(|(_, p, _)| p)
    }
}
