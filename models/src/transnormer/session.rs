//! Running a model on a backend: prefill a batch of prompts, then decode token by token.

use super::model::{Names, Transnormer};
use super::model_graphs::Logits;
use crate::backend::Backend;
use crate::batch::{self, fingerprint};
use crate::graph::{Graph, Plan};
use crate::ModelError;
use tessel_package::DType;

/// A batch of sequences in flight on one backend.
pub struct Session<'a> {
    pub model: &'a Transnormer,
    be: &'a mut dyn Backend,
    batch: usize,
    lengths: Vec<usize>,
    decode: Option<(Graph, Plan, String)>,
}

impl<'a> Session<'a> {
    /// A session of `batch` sequences (the model's weights already loaded into `be`).
    pub fn new(
        model: &'a Transnormer,
        be: &'a mut dyn Backend,
        batch: usize,
    ) -> Result<Self, ModelError> {
        if batch == 0 {
            return Err(ModelError::Input("a batch of no sequences".into()));
        }
        model.batch_buffers(be, batch)?;
        Ok(Self {
            model,
            be,
            batch,
            lengths: vec![0; batch],
            decode: None,
        })
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.be
    }

    /// Tokens consumed so far per sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Runs the prompts (one per sequence, of any lengths ≥ 1) through the model, left-padded to
    /// the longest; each layer's final state is left for decoding. Returns the memory plan.
    pub fn prefill(&mut self, prompts: &[Vec<u32>], logits: Logits) -> Result<Plan, ModelError> {
        let (b, cfg) = (self.batch, &self.model.cfg);
        if prompts.len() != b {
            return Err(ModelError::Input(format!(
                "{} prompts for a batch of {b}",
                prompts.len()
            )));
        }
        if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
            return Err(ModelError::Input(format!("prompt {i} is empty")));
        }
        if let Some(t) = prompts.iter().flatten().find(|t| **t as usize >= cfg.vocab) {
            return Err(ModelError::Input(format!(
                "token id {t} is outside the vocabulary of {}",
                cfg.vocab
            )));
        }
        let n = prompts.iter().map(Vec::len).max().expect("non-empty batch");
        let mut ids = Vec::with_capacity(b * n);
        for p in prompts {
            ids.extend(std::iter::repeat_n(
                cfg.raw.pad_token_id as f64,
                n - p.len(),
            ));
            ids.extend(p.iter().map(|t| *t as f64));
        }
        let pos0: Vec<f64> = prompts.iter().map(|p| p.len() as f64 - n as f64).collect();
        let (prompt, starts) = (Names::prompt(b, n), Names::pos0(b, n));
        self.be.persistent(&prompt, DType::I32, b * n)?;
        self.be.write(&prompt, &ids)?;
        self.be.persistent(&starts, DType::I32, b)?;
        self.be.write(&starts, &pos0)?;
        if logits == Logits::All {
            self.be
                .persistent(&Names::all_logits(b, n), DType::F32, b * n * cfg.vocab)?;
        }
        let graph = self.model.prefill_graph(b, n, logits);
        // The kernels index with 32-bit integers: a tensor of 2^31 elements or more would wrap.
        if let Some(t) = graph
            .transients
            .iter()
            .find(|t| t.numel > i32::MAX as usize)
        {
            return Err(ModelError::Input(format!(
                "a prefill of {b} × {n} tokens needs `{}` of {} elements, beyond the kernels' \
                 32-bit indexing (2^31 − 1): prefill fewer sequences at once",
                t.name, t.numel
            )));
        }
        let plan = graph.plan();
        self.be.run(&graph, &plan)?;
        self.lengths = prompts.iter().map(Vec::len).collect();
        let lens: Vec<f64> = self.lengths.iter().map(|l| *l as f64).collect();
        self.be.write(&Names::pos(b), &lens)?;
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

    /// The tokens the next step will consume (the greedy choices, unless overridden).
    pub fn next_tokens(&mut self) -> Result<Vec<u32>, ModelError> {
        batch::next_tokens(self.be, self.batch)
    }

    /// Makes the next step consume `tokens` instead of the greedy choices.
    pub fn set_next_tokens(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        batch::set_next_tokens(self.be, self.batch, self.model.cfg.vocab, tokens)
    }

    /// One decode step: consumes the next tokens and returns the greedy choices after them.
    pub fn step(&mut self) -> Result<Vec<u32>, ModelError> {
        if self.lengths.contains(&0) {
            return Err(ModelError::Input("decode before prefill".into()));
        }
        let b = self.batch;
        let (graph, plan, key) = self.decode.get_or_insert_with(|| {
            let g = self.model.decode_graph(b);
            let p = g.plan();
            let key = format!("decode.b{b}.{}", fingerprint(&g, &p));
            (g, p, key)
        });
        self.be.run_repeated(key, graph, plan)?;
        self.lengths.iter_mut().for_each(|l| *l += 1);
        self.next_tokens()
    }

    /// The decode step's graph and plan (after the first step).
    pub fn decode_plan(&self) -> Option<&Plan> {
        self.decode.as_ref().map(|(_, p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transnormer::config::ModelConfig;
    use crate::transnormer::model::Choice;
    use crate::transnormer::Tiles;

    #[test]
    fn decode_graphs_that_differ_have_different_keys() {
        let cfg = ModelConfig::with_shape(2, 64, 2, 96, 50, &[0]).unwrap();
        let mut m = Transnormer::new(cfg, Tiles::gpu());
        let key = |m: &Transnormer, b: usize| {
            let g = m.decode_graph(b);
            let p = g.plan();
            fingerprint(&g, &p)
        };
        let greedy = key(&m, 2);
        assert_eq!(greedy, key(&m, 2), "the same graph, the same key");
        m.choice = Choice::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 1,
        };
        let sampled = key(&m, 2);
        assert_ne!(greedy, sampled);
        m.choice = Choice::Sample {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 2,
        };
        assert_ne!(sampled, key(&m, 2), "a scalar argument changes the key");
    }

    #[test]
    fn a_prefill_past_32_bit_indexing_is_refused_before_it_runs() {
        let model = Transnormer::new(ModelConfig::released("385m").unwrap(), Tiles::gpu());
        let mut be = crate::backend::InterpBackend::new();
        let mut s = Session::new(&model, &mut be, 1).unwrap();
        // 2^19 tokens: qkvu is 2^19 × 4096 = 2^31 elements. (No weights are loaded: nothing
        // may run.)
        let err = s.prefill(&[vec![7; 1 << 19]], Logits::Last).unwrap_err();
        assert!(err.to_string().contains("32-bit indexing"), "{err}");
        assert!(err.to_string().contains("qkvu"), "{err}");
    }
}
